"""Who may do what: the access token's state, its permissions and each ad account's access.

Meta's rules apart from the wire (server.py routes and renders them). Everything is in memory,
like the faults: a reset (and a restart) puts back the state given at start. Sources for every
rule: docs/meta-sandbox.md, "Tokens, permissions and account access".
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from .store import GraphError

DAY = 86_400
USER_ID = "100000000000001"  # the sandbox's one user (GET /me)
APP_ID = "1000000000000001"
APPLICATION = "Meta Sandbox App"
TOKEN_TYPES = ("SYSTEM_USER", "USER")
DEFAULT_SCOPES = ("ads_management", "ads_read", "business_management")
# Meta's "data access expiration" for a user's data; what a system user's token shows was not
# found: the sandbox's assumption is the same 90 days after issue.
DATA_ACCESS_DAYS = 90
# Meta's error messages speak Pacific time (recorded "Session has expired on … PDT").
MESSAGE_ZONE = ZoneInfo("America/Los_Angeles")
# Subcodes of code 190 for a token that was invalidated (Graph API "Handling Errors").
INVALID_MESSAGES = {
    460: (
        "Error validating access token: The session has been invalidated because the user changed "
        "their password or Facebook has changed the session for security reasons."
    ),
    467: "Error validating access token: The session is invalid because the user logged out.",
}
ACCOUNT_STATUSES = {
    1: "ACTIVE",
    2: "DISABLED",
    3: "UNSETTLED",
    7: "PENDING_RISK_REVIEW",
    8: "PENDING_SETTLEMENT",
    9: "IN_GRACE_PERIOD",
    100: "PENDING_CLOSURE",
    101: "CLOSED",
    201: "ANY_ACTIVE",
    202: "ANY_CLOSED",
}
# Statuses whose campaigns, ad sets and ads can still be created and edited (assumption: an
# account in its grace period still runs; every other one is refused).
WRITABLE_STATUSES = frozenset({1, 9, 201})
TASKS = ("MANAGE", "ADVERTISE", "ANALYZE", "DRAFT")
EDIT_TASKS = frozenset({"MANAGE", "ADVERTISE"})
TOKEN_FIELDS = {
    "valid",
    "invalid_subcode",
    "expires_at",
    "expires_in_s",
    "data_access_expires_at",
    "data_access_expires_in_s",
    "scopes",
    "type",
}
ACCOUNT_FIELDS = {"account_status", "disable_reason", "user_tasks"}
MAX_EPOCH = 32_503_680_000  # year 3000
MAX_SPAN_S = 100 * 365 * DAY


def _int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}]")
    return value


def _seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not -MAX_SPAN_S <= value <= MAX_SPAN_S:
        raise ValueError(f"{name} must be a number of seconds in [-{MAX_SPAN_S}, {MAX_SPAN_S}]")
    return float(value)


def _meta_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, MESSAGE_ZONE).strftime("%A, %d-%b-%y %H:%M:%S %Z")


def is_app_token(token: str) -> bool:
    """An app access token is ``{app_id}|{app_secret}``."""
    app_id, bar, secret = token.partition("|")
    return bool(bar and app_id and secret)


# --------------------------------------------------------------------------- the token


@dataclass(frozen=True)
class Token:
    """The state of the one token the sandbox accepts (any token, or only ``--token``)."""

    type: str = "SYSTEM_USER"
    app_id: str = APP_ID
    application: str = APPLICATION
    user_id: str = USER_ID
    issued_at: int = 0
    expires_at: int = 0  # 0: never expires (Meta's convention)
    data_access_expires_at: int = 0
    valid: bool = True  # False: invalidated, answering 190 with invalid_subcode
    invalid_subcode: int = 460
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    declined: tuple[str, ...] = ()  # revoked permissions: listed as "declined"

    def expired(self, now: float) -> bool:
        return self.expires_at != 0 and now >= self.expires_at

    def error(self, now: float) -> GraphError | None:
        """What every Graph call made with this token answers, or None while it is valid."""
        if not self.valid:
            return GraphError(INVALID_MESSAGES[self.invalid_subcode], code=190, subcode=self.invalid_subcode)
        if self.expired(now):
            return GraphError(
                f"Error validating access token: Session has expired on {_meta_time(self.expires_at)}. "
                f"The current time is {_meta_time(now)}.",
                code=190,
                subcode=463,
            )
        return None

    def debug_json(self, now: float) -> dict[str, Any]:
        """``data`` of GET /debug_token for this token. An invalid one keeps its dates but not
        issued_at, and carries the error, as in the recorded answers."""
        body: dict[str, Any] = {
            "app_id": self.app_id,
            "type": self.type,
            "application": self.application,
            "data_access_expires_at": self.data_access_expires_at,
            "expires_at": self.expires_at,
            "is_valid": True,
            "issued_at": self.issued_at,
            "scopes": list(self.scopes),
            "granular_scopes": [{"scope": scope} for scope in self.scopes],
            "user_id": self.user_id,
        }
        error = self.error(now)
        if error is not None:
            del body["issued_at"]
            body["is_valid"] = False
            body["error"] = {"code": error.code, "message": error.message, "subcode": error.subcode}
        return body

    def state_json(self, now: float) -> dict[str, Any]:
        """GET /_sandbox/token: the debug_token fields, always with issued_at, and what was revoked."""
        body = self.debug_json(now)
        body.setdefault("issued_at", self.issued_at)
        body["declined"] = list(self.declined)
        return body

    def permissions(self) -> list[dict[str, str]]:
        return [{"permission": p, "status": "granted"} for p in self.scopes] + [
            {"permission": p, "status": "declined"} for p in self.declined
        ]

    def revoke(self, permission: str) -> Token:
        if permission not in self.scopes:
            return self
        return replace(
            self,
            scopes=tuple(p for p in self.scopes if p != permission),
            declined=(*self.declined, permission),
        )

    def with_scopes(self, scopes: Sequence[str]) -> Token:
        """Grant exactly ``scopes``; every other permission it knew reads declined."""
        known = [p for p in (*self.scopes, *self.declined) if p not in scopes]
        return replace(self, scopes=tuple(scopes), declined=tuple(dict.fromkeys(known)))

    def updated(self, body: Mapping[str, Any], now: float) -> Token:
        """A POST /_sandbox/token body applied (partial update); ValueError for bad input."""
        if not isinstance(body, Mapping):
            raise ValueError("the body must be a JSON object")
        unknown = set(body) - TOKEN_FIELDS
        if unknown:
            raise ValueError(f"unknown token fields: {sorted(unknown)}; known: {sorted(TOKEN_FIELDS)}")
        for absolute, relative in (
            ("expires_at", "expires_in_s"),
            ("data_access_expires_at", "data_access_expires_in_s"),
        ):
            if absolute in body and relative in body:
                raise ValueError(f"give {absolute} or {relative}, not both")
        token = self
        if "valid" in body:
            if not isinstance(body["valid"], bool):
                raise ValueError("valid must be true or false")
            token = replace(token, valid=body["valid"])
        if "invalid_subcode" in body:
            if body["invalid_subcode"] not in INVALID_MESSAGES or isinstance(body["invalid_subcode"], bool):
                raise ValueError(f"invalid_subcode must be one of {sorted(INVALID_MESSAGES)}")
            token = replace(token, invalid_subcode=body["invalid_subcode"])
        if "expires_at" in body:
            token = replace(token, expires_at=_int("expires_at", body["expires_at"], 0, MAX_EPOCH))
        if "expires_in_s" in body:
            token = replace(token, expires_at=max(1, int(now + _seconds("expires_in_s", body["expires_in_s"]))))
        if "data_access_expires_at" in body:
            value = _int("data_access_expires_at", body["data_access_expires_at"], 0, MAX_EPOCH)
            token = replace(token, data_access_expires_at=value)
        if "data_access_expires_in_s" in body:
            seconds = _seconds("data_access_expires_in_s", body["data_access_expires_in_s"])
            token = replace(token, data_access_expires_at=max(1, int(now + seconds)))
        if "scopes" in body:
            scopes = body["scopes"]
            if (
                not isinstance(scopes, list)
                or not all(isinstance(s, str) and s and s.strip() == s for s in scopes)
                or len(set(scopes)) != len(scopes)
            ):
                raise ValueError('scopes must be a list of distinct permission names, e.g. ["ads_read"]')
            token = token.with_scopes(scopes)
        if "type" in body:
            if body["type"] not in TOKEN_TYPES:
                raise ValueError(f"type must be one of {list(TOKEN_TYPES)}")
            token = replace(token, type=body["type"])
        return token


def issued_token(now: float) -> Token:
    """The default token, as issued now: never expires; data access for 90 days (assumption)."""
    issued = int(now)
    return Token(issued_at=issued, data_access_expires_at=issued + DATA_ACCESS_DAYS * DAY)


# --------------------------------------------------------------------------- ad accounts


@dataclass(frozen=True)
class AccountAccess:
    """An ad account's status and the tasks the token's user has on it ([]: no role)."""

    account_status: int = 1
    disable_reason: int = 0
    user_tasks: tuple[str, ...] = TASKS

    @property
    def reachable(self) -> bool:
        return bool(self.user_tasks)

    def updated(self, body: Mapping[str, Any]) -> AccountAccess:
        if not isinstance(body, Mapping):
            raise ValueError("the body must be a JSON object")
        unknown = set(body) - ACCOUNT_FIELDS
        if unknown:
            raise ValueError(f"unknown account fields: {sorted(unknown)}; known: {sorted(ACCOUNT_FIELDS)}")
        access = self
        if "account_status" in body:
            status = body["account_status"]
            if isinstance(status, bool) or status not in ACCOUNT_STATUSES:
                names = ", ".join(f"{k} {v}" for k, v in ACCOUNT_STATUSES.items())
                raise ValueError(f"account_status must be one of {names}")
            access = replace(access, account_status=status)
        if "disable_reason" in body:
            access = replace(access, disable_reason=_int("disable_reason", body["disable_reason"], 0, 1000))
        if "user_tasks" in body:
            tasks = body["user_tasks"]
            if not isinstance(tasks, list) or not set(tasks) <= set(TASKS) or len(set(tasks)) != len(tasks):
                raise ValueError(f"user_tasks must be a list of distinct tasks from {list(TASKS)} ([]: no role)")
            access = replace(access, user_tasks=tuple(tasks))
        return access

    def to_json(self, account_key: str) -> dict[str, Any]:
        return {
            "id": account_key,
            "account_status": self.account_status,
            "disable_reason": self.disable_reason,
            "user_tasks": list(self.user_tasks),
        }


# --------------------------------------------------------------------------- the rules


def _permission_error(message: str, **extra: Any) -> GraphError:
    """Code 200, a permissions error; answered with HTTP 403 as recorded."""
    return GraphError(message, code=200, http_status=403, **extra)


def write_refusal(token: Token, account_key: str, access: AccountAccess) -> GraphError | None:
    """Why a write (create, edit, delete) in this ad account is refused, or None."""
    if "ads_management" not in token.scopes:
        return _permission_error("(#200) Requires ads_management permission to manage the object")
    if not EDIT_TASKS & set(access.user_tasks):
        return _permission_error(
            "(#200) Permissions error",
            user_title="No permission to edit",
            user_msg=f"The user's tasks on {account_key} ({', '.join(access.user_tasks)}) include neither "
            "MANAGE nor ADVERTISE.",
        )
    if access.account_status not in WRITABLE_STATUSES:
        status = ACCOUNT_STATUSES[access.account_status]
        return _permission_error(
            "(#200) Permissions error",
            is_transient=False,
            user_title="Ad account not active",
            user_msg=f"Ad account {account_key} is {status} (account_status {access.account_status}, "
            f"disable_reason {access.disable_reason}): its campaigns, ad sets and ads cannot be created or edited.",
        )
    return None


def read_refusal(token: Token) -> GraphError | None:
    """Why a read of ad objects is refused (neither ads_read nor ads_management), or None."""
    if not {"ads_management", "ads_read"} & set(token.scopes):
        return _permission_error("(#200) Ad account owner has NOT grant ads_management or ads_read permission")
    return None


def debug_token_refusal(access_token: str, input_token: str, token: Token) -> GraphError | None:
    """Who may call /debug_token: an app token of this app, or a user token inspecting itself.
    A system user's token may not inspect itself."""
    if is_app_token(access_token):
        if access_token.partition("|")[0] == token.app_id:
            return None
        return GraphError("Invalid OAuth access token signature.", code=190)
    if access_token and access_token == input_token and token.type == "USER":
        return None
    return must_provide_app_token()


def must_provide_app_token() -> GraphError:
    return GraphError(
        "(#100) You must provide an app access token, or a user access token that is an owner or developer of the app",
        code=100,
    )


# --------------------------------------------------------------------------- the holder


@dataclass
class Access:
    """The token and the accounts' access, swapped whole under a lock (readers take a reference)."""

    start_token: Mapping[str, Any] = field(default_factory=dict)
    token: Token = field(default_factory=Token)
    accounts: dict[int, AccountAccess] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self, now: float) -> None:
        """The start state: the token as issued now with the start options, every account default."""
        token = issued_token(now).updated(self.start_token, now)
        with self._lock:
            self.token = token
            self.accounts = {}

    def update_token(self, body: Mapping[str, Any], now: float) -> Token:
        with self._lock:
            self.token = self.token.updated(body, now)
            return self.token

    def revoke(self, permission: str) -> None:
        with self._lock:
            self.token = self.token.revoke(permission)

    def account(self, account_id: int) -> AccountAccess:
        return self.accounts.get(account_id) or AccountAccess()

    def update_account(self, account_id: int, body: Mapping[str, Any]) -> AccountAccess:
        with self._lock:
            access = self.account(account_id).updated(body)
            self.accounts = {**self.accounts, account_id: access}
            return access
