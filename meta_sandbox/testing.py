"""Run a Meta sandbox inside a test process.

    with start_sandbox(accounts=2, campaigns_per_account=50) as sandbox:
        session = FacebookSession(None, None, "token"); session.GRAPH = sandbox.url
        sandbox.faults(error_rate=0.1)
        ...

The server listens on a free loopback port in a daemon thread. The helper methods go through
the HTTP control API (/_sandbox/...) with urllib, exactly as an out-of-process client would.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

from .server import SandboxHTTPServer, make_server
from .store import SeedConfig


class RunningSandbox:
    """A sandbox serving in a background thread; ``stop()`` (or leaving ``with``) ends it."""

    def __init__(self, server: SandboxHTTPServer, temp_dir: Path | None) -> None:
        self.server = server
        self.url = server.url
        self.store_path = server.sandbox.store.path
        self._temp_dir = temp_dir
        # A short poll interval keeps stop() quick (serve_forever checks for shutdown between polls).
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="meta-sandbox", daemon=True
        )
        self._thread.start()

    def reset(self, **body: Any) -> dict[str, Any]:
        """Reseed (``accounts``, ``campaigns_per_account``, ``seed``, ``statuses``, ``delivery_issues``,
        ``timezones``, ``currencies``, ...); returns the state. The business clock is kept; the faults
        go back to those given at start."""
        return self._control("POST", "/_sandbox/reset", body)

    def faults(self, **body: Any) -> dict[str, Any]:
        """Replace the fault configuration (no arguments clears it); returns the new configuration."""
        return self._control("POST", "/_sandbox/faults", body)

    def state(self) -> dict[str, Any]:
        return self._control("GET", "/_sandbox/state")

    def campaigns(self, account: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """Meta-side truth: compact campaign rows, optionally for one account and configured status."""
        query = urlencode({k: v for k, v in (("account", account), ("status", status)) if v})
        return self._control("GET", f"/_sandbox/campaigns?{query}")["data"]

    def set_delivery(
        self,
        campaign_id: str,
        effective_status: str | None,
        issues_info: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Let Meta's delivery system mark a campaign IN_PROCESS / WITH_ISSUES (None clears); returns its row."""
        body = {"effective_status": effective_status, "issues_info": issues_info}
        return self._control("POST", f"/_sandbox/campaigns/{campaign_id}", body)

    def set_clock(self, now: str | float | None = None) -> dict[str, Any]:
        """Move the sandbox's business clock to ``now`` (ISO 8601 with offset, or epoch); None: real time."""
        return self._control("POST", "/_sandbox/clock", {} if now is None else {"now": now})

    def clock(self) -> dict[str, Any]:
        return self._control("GET", "/_sandbox/clock")

    def token(self, **body: Any) -> dict[str, Any]:
        """The access token's state; with arguments, a partial update first (``valid``,
        ``expires_at``, ``expires_in_s``, ``data_access_expires_at``, ``data_access_expires_in_s``,
        ``scopes``, ``type``, ``invalid_subcode``)."""
        if not body:
            return self._control("GET", "/_sandbox/token")
        return self._control("POST", "/_sandbox/token", body)

    def account(self, account_id: str, **body: Any) -> dict[str, Any]:
        """Partially update an ad account's access (``account_status``, ``disable_reason``,
        ``user_tasks``); returns it."""
        return self._control("POST", f"/_sandbox/accounts/{account_id}", body)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self.server.shutdown()
        self._thread.join()
        self.server.close()
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)

    def _control(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:  # e.g. an invalid fault config: surface the reason
            raise ValueError(json.loads(exc.read())["error"]["message"]) from exc

    def __enter__(self) -> RunningSandbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_sandbox(
    store_path: str | Path | None = None,
    *,
    token: str | None = None,
    faults: Mapping[str, Any] | None = None,
    token_state: Mapping[str, Any] | None = None,
    **reset_kwargs: Any,
) -> RunningSandbox:
    """Start a sandbox on 127.0.0.1 with a free port.

    Without ``store_path`` the store is a fresh temp file (removed on stop), seeded with
    ``reset_kwargs`` (the /_sandbox/reset fields). With a ``store_path``, the store is reseeded
    only if ``reset_kwargs`` are given or it is empty, so a restart on the same file keeps state.
    ``faults`` (a /_sandbox/faults body, e.g. ``{"latency_profile": "live"}``) are in force from
    the start and restored by every ``reset()``, like the command line's latency options;
    ``token_state`` (a /_sandbox/token body, e.g. ``{"scopes": ["ads_read"]}``) likewise.
    """
    temp_dir = None
    if store_path is None:
        temp_dir = Path(tempfile.mkdtemp(prefix="meta-sandbox-"))
        store_path = temp_dir / "sandbox.sqlite3"
    seed = SeedConfig.from_json(reset_kwargs)
    server = make_server(
        "127.0.0.1",
        0,
        store_path,
        seed=seed,
        reset=bool(reset_kwargs),
        token=token,
        faults=faults,
        token_state=token_state,
    )
    return RunningSandbox(server, temp_dir)
