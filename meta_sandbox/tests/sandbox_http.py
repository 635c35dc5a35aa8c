"""Raw Graph API calls for the sandbox tests, with requests (which the stdlib-only package itself avoids)."""

from __future__ import annotations

import json
from typing import Any

import requests

from meta_sandbox.testing import RunningSandbox

TOKEN = "sandbox-token"


def graph_get(
    sandbox: RunningSandbox,
    path: str,
    version: str = "v25.0",
    token: str | None = TOKEN,
    **params: Any,
) -> requests.Response:
    """GET ``/{version}/{path}`` with ``params`` as the query; ``token=None`` sends no access token."""
    return requests.get(f"{sandbox.url}/{version}/{path}", params={"access_token": token, **params}, timeout=10)


def graph_post(sandbox: RunningSandbox, path: str, **data: Any) -> requests.Response:
    """POST ``data`` as a form to ``/v25.0/{path}``."""
    return requests.post(f"{sandbox.url}/v25.0/{path}", params={"access_token": TOKEN}, data=data, timeout=10)


def graph_batch(sandbox: RunningSandbox, items: list[dict[str, Any]], **extra: Any) -> requests.Response:
    """POST ``items`` as one batch request, with ``extra`` form fields (e.g. ``include_headers``)."""
    return graph_post(sandbox, "", batch=json.dumps(items), **extra)


def exhaust_score(sandbox: RunningSandbox, account: str) -> None:
    """Someone else (another tool on the same app) uses up an ad account's score until Meta blocks it."""
    for _ in range(10_000):
        if graph_get(sandbox, account, fields="id").status_code != 200:
            return
    raise AssertionError(f"{account} was never blocked")
