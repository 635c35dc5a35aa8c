"""Keep credentials out of the logs.

SecretMaskingFilter (attached to the root handler in settings.LOGGING) rewrites each record's
final message, and its formatted traceback, so that Meta access tokens, appsecret_proof values
and Authorization header credentials (Bearer / Token / Module keys) read as "***".
"""

from __future__ import annotations

import logging
import re

MASK = "***"

_PATTERNS = (
    # access_token=EAAB..., appsecret_proof=abc (query strings, form bodies, repr'd URLs), and the
    # JSON / dict forms "access_token": "EAAB...".
    re.compile(
        r"""(?P<keep>\b(?:access_token|appsecret_proof|client_secret|fb_exchange_token)"""
        r"""(?:=|['"]?\s*:\s*['"]?|%3D))(?P<secret>[^\s&'",;)}\]]+)""",
        re.IGNORECASE,
    ),
    # Authorization: Bearer <key> / Token <key> / Module <key>, also as 'Authorization': 'Bearer <key>'
    # and the WSGI name HTTP_AUTHORIZATION.
    re.compile(
        r"""(?P<keep>\bauthorization['"]?\s*[:=]\s*['"]?\s*(?:bearer|token|module)\s+)(?P<secret>[^\s'",;)}\]]+)""",
        re.IGNORECASE,
    ),
    # A bare "Bearer <key>" anywhere else.
    re.compile(r"""(?P<keep>\bbearer\s+)(?P<secret>[A-Za-z0-9._~+/=-]{8,})""", re.IGNORECASE),
)


def mask_secrets(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group("keep") + MASK, text)
    return text


class SecretMaskingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string: let the handler report it as usual
            return True
        masked = mask_secrets(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_secrets(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_secrets(record.stack_info)
        return True
