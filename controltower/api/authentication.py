"""Token authentication that accepts `Authorization: Bearer <key>` and `Authorization: Token <key>`.

The spec's curl examples send Bearer; DRF clients and its docs send Token. Both name the
same DRF token (rest_framework.authtoken), issued with `manage.py issue_token`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication, get_authorization_header

if TYPE_CHECKING:  # DRF imports this module while rest_framework.views is still loading
    from rest_framework.request import Request

KEYWORDS = (b"bearer", b"token")


class BearerTokenAuthentication(TokenAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
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
        return self.authenticate_credentials(key)

    def authenticate_header(self, request: Request) -> str:
        # Sent as WWW-Authenticate with every 401, which is also what makes it a 401 and not a 403.
        return self.keyword


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """Two alternative schemes in the OpenAPI document: HTTP bearer and the `Token` prefix."""

    target_class = BearerTokenAuthentication
    name = ["bearerAuth", "tokenAuth"]
    priority = 1  # ahead of drf-spectacular's own TokenAuthentication extension

    def get_security_definition(self, auto_schema: Any) -> list[dict[str, str]]:
        return [
            {"type": "http", "scheme": "bearer", "description": "`Authorization: Bearer <token>` (manage.py issue_token)."},
            {"type": "apiKey", "in": "header", "name": "Authorization",
             "description": "`Authorization: Token <token>`: the same token with DRF's prefix."},
        ]

    def get_security_requirement(self, auto_schema: Any) -> list[dict[str, list[str]]]:
        # A list means "either one" in OpenAPI; one dict with both names would require both.
        return [{"bearerAuth": []}, {"tokenAuth": []}]
