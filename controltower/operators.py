"""The operator accounts a person logs in with: the first one made at start-up, and a lost password reset.

A generated password is returned to the caller, which shows it once on the terminal; it is never logged
or written to a file (it could then be read back long after it was shown).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

from axes.utils import reset as reset_lockouts
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.core.management.base import CommandError
from django.db import transaction

logger = logging.getLogger(__name__)


def new_password() -> str:
    return secrets.token_urlsafe(12)


@dataclass(frozen=True)
class Operator:
    username: str
    created: bool
    generated_password: str | None  # to show once: made here, so nobody knows it yet


def ensure_operator(username: str, password: str | None) -> Operator:
    """Create the superuser `username` unless it exists, with `password` or a generated one."""
    user_model = get_user_model()
    if user_model.objects.filter(username=username).exists():
        return Operator(username, created=False, generated_password=None)
    generated = None if password else new_password()
    user_model.objects.create_superuser(username=username, email="", password=password or generated)
    logger.info("operator account %r created", username)
    return Operator(username, created=True, generated_password=generated)


def reset_password(username: str, by: str) -> str:
    """Give `username` a new random password and lift its login lockouts. Recorded (who, when, by whom) in
    the admin's history of that account and in the log; returns the password, which neither holds."""
    user_model = get_user_model()
    with transaction.atomic():
        user = user_model.objects.select_for_update().filter(username=username).first()
        if user is None:
            known = (
                ", ".join(
                    user_model.objects.filter(is_staff=True).order_by("username").values_list("username", flat=True)
                )
                or "none"
            )
            raise CommandError(f"No account named {username!r}. Staff accounts: {known}.")
        password = new_password()
        user.set_password(password)
        user.save(update_fields=["password"])
        LogEntry.objects.create(
            user=user,
            content_type=ContentType.objects.get_for_model(user),
            object_id=str(user.pk),
            object_repr=username,
            action_flag=CHANGE,
            change_message=f"Password reset on the command line by {by}.",
        )
    lockouts = reset_lockouts(username=username)
    logger.warning("password of %r reset on the command line by %s; %d failed login(s) cleared", username, by, lockouts)
    return password
