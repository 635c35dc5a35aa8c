"""API token authentication: `Authorization: Bearer <key>` or `Authorization: Token <key>`.

The spec's curl examples send Bearer; DRF clients and its docs send Token. Both name the same
ApiToken (manage.py issue_token, or the admin), found by the sha256 of the key: only that digest
is stored, and a random 256-bit key needs no slower hash. Revoked and expired tokens get 401.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from controltower.models import ApiToken

if TYPE_CHECKING:  # DRF imports this module while rest_framework.views is still loading
    from rest_framework.request import Request

KEYWORDS = (b"bearer", b"token")
# last_used_at is written at most this often per token, not on every request.
LAST_USE_RESOLUTION = timedelta(minutes=1)


def authenticate_key(key: str) -> tuple[Any, ApiToken]:
    token = ApiToken.objects.select_related("user").filter(digest=ApiToken.digest_of(key)).first()
    if token is None:
        raise exceptions.AuthenticationFailed("Invalid token.")
    now = timezone.now()
    refusal = token.refusal(now)
    if refusal:
        raise exceptions.AuthenticationFailed(refusal)
    if not token.user.is_active:
        raise exceptions.AuthenticationFailed("User inactive or deleted.")
    if token.last_used_at is None or now - token.last_used_at >= LAST_USE_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user, token


class BearerTokenAuthentication(BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() not in KEYWORDS:
            return None  # not ours: let session authentication try
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Invalid token header: expected '<Bearer|Token> <key>'.")
        try:
            key = parts[1].decode("ascii")
        except UnicodeError:
            raise exceptions.AuthenticationFailed("Invalid token header: the key has invalid characters.") from None
        if not key.isalnum():  # keys are hex; anything else (a NUL included) never reaches the database
            raise exceptions.AuthenticationFailed("Invalid token header: the key has invalid characters.")
        return authenticate_key(key)

    def authenticate_header(self, request: Request) -> str:
        # Sent as WWW-Authenticate with every 401, which is also what makes it a 401 and not a 403.
        return self.keyword


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """Two alternative schemes in the OpenAPI document: HTTP bearer and the `Token` prefix."""

    target_class = BearerTokenAuthentication
    name = ["bearerAuth", "tokenAuth"]
    priority = 1

    def get_security_definition(self, auto_schema: Any) -> list[dict[str, str]]:
        return [
            {
                "type": "http",
                "scheme": "bearer",
                "description": "`Authorization: Bearer <token>` (manage.py issue_token; stored hashed, shown once).",
            },
            {
                "type": "apiKey",
                "in": "header",
                "name": "Authorization",
                "description": "`Authorization: Token <token>`: the same token with DRF's prefix.",
            },
        ]

    def get_security_requirement(self, auto_schema: Any) -> list[dict[str, list[str]]]:
        # A list means "either one" in OpenAPI; one dict with both names would require both.
        return [{"bearerAuth": []}, {"tokenAuth": []}]
