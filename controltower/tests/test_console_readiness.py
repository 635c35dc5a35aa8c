"""Kill-switch readiness in the console: the line beside the EMERGENCY STOP button, Check now, the
readiness page, and each account's readiness on the stop confirmation (informing, never blocking).

The checks are recorded as `controltower.readiness` records them, from readiness_policy's own
verdicts; Check now runs the real check against the Meta sandbox over HTTP.
"""

from __future__ import annotations

import html as markup
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone

from controltower import readiness
from controltower import readiness_policy as policy
from controltower.console import readiness_digest
from controltower.models import ReadinessCheck, TowerState
from controltower.roles import OPERATORS_GROUP, VIEWERS_GROUP

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("synced")]

ITEM_MS = 20.0
PARALLELISM = 8


def _user(username: str, group: str) -> User:
    user = User.objects.create_user(username, password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def operator() -> Client:
    client = Client()
    client.force_login(_user("olivia", OPERATORS_GROUP))
    return client


@pytest.fixture
def viewer() -> Client:
    client = Client()
    client.force_login(_user("victor", VIEWERS_GROUP))
    return client


def _token(scopes: tuple[str, ...] = ("ads_management", "ads_read"), **facts) -> policy.TokenReadiness:
    found = policy.TokenFacts(
        checked=True, valid=True, type="SYSTEM_USER", scopes=scopes, source="debug_token", **facts
    )
    return policy.token_readiness(found, timezone.now(), 7)


def _account(account_id: str, active: int, tier: str = "standard_access", **facts) -> policy.AccountReadiness:
    defaults = {"name": f"Shop {account_id}", "account_status": 1, "user_tasks": ("MANAGE", "ADVERTISE")}
    found = policy.AccountFacts(
        account_id, True, tier=tier, latency_ms=120.0, active_campaigns=active, **{**defaults, **facts}
    )
    return policy.account_readiness(found, ITEM_MS)


def _unreachable(account_id: str, error: str = "(#200) Permissions error") -> policy.AccountReadiness:
    found = policy.AccountFacts(account_id, False, error=error, active_campaigns=7)
    return policy.account_readiness(found, ITEM_MS)


def _record(
    token: policy.TokenReadiness, accounts: list[policy.AccountReadiness], by: str = "scheduler", minutes_ago: int = 3
) -> ReadinessCheck:
    """A check as controltower.readiness.check records it, `minutes_ago`."""
    check = readiness.record(policy.overall(token, accounts, PARALLELISM), by)
    check.checked_at = timezone.now() - timedelta(minutes=minutes_ago)
    check.save(update_fields=["checked_at"])
    return check


def _ready_agency() -> ReadinessCheck:
    """12 standard-tier accounts, 1,204 ACTIVE campaigns."""
    return _record(_token(), [_account(f"act_{n}", 104 if n == 1 else 100) for n in range(1, 13)])


def _degraded_agency() -> ReadinessCheck:
    """300 development-tier accounts, each with more campaigns than one rate window pauses; 5 of them
    disabled, 3 the token's user may only analyse, 2 unsettled; a token expiring in 3 days."""
    accounts = []
    for n in range(1, 301):
        facts = {"account_status": 2} if n > 295 else {"user_tasks": ("ANALYZE",)} if n > 292 else {}
        facts = {"account_status": 3} if n in (100, 101) else facts
        accounts.append(_account(f"act_{n}", 20 + n, tier="development_access", **facts))
    return _record(_token(expires_at=timezone.now() + timedelta(days=3)), accounts)


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", markup.unescape(re.sub(r"<[^>]+>", " ", html)).replace("\xa0", " ")).strip()


def _part(html: str, element_id: str) -> str:
    """The element with this id, up to its closing tag (the console's parts do not nest their own kind)."""
    start = html.index(f'id="{element_id}"')
    start = html.rindex("<", 0, start)
    tag = re.match(r"<(\w+)", html[start:]).group(1)
    depth, pos = 0, start
    for match in re.finditer(rf"<(/?){tag}\b[^>]*>", html[start:]):
        depth += -1 if match.group(1) else 1
        if depth == 0:
            pos = start + match.end()
            break
    return html[start:pos]


def test_a_ready_check_reads_as_one_line_beside_the_emergency_stop_button(operator: Client) -> None:
    check = _ready_agency()
    assert check.summary.startswith("READY: a stop now would pause 1,204 campaigns in 12 accounts in about")

    html = operator.get("/").content.decode()

    beside = _part(html, "kill-switch")  # one container: the line, then the button
    assert 'id="emergency-stop-button"' in beside and 'id="readiness-line"' in beside
    line = _text(_part(beside, "readiness-line"))
    assert check.summary in line and "checked 3 minutes ago" in line
    assert 'data-verdict="ready"' in _part(beside, "readiness-line") and "READY" in line
    assert 'id="readiness-reasons"' not in beside  # nothing is wrong
    assert "12 READY of 12 accounts" in line and 'id="readiness-check-button"' in beside


def test_a_degraded_check_shows_its_reasons_grouped_whatever_the_number_of_accounts(operator: Client) -> None:
    check = _degraded_agency()
    assert check.verdict == "degraded" and len(check.reasons) > 600

    html = operator.get("/").content.decode()

    line = _part(html, "readiness-line")
    assert 'data-verdict="degraded"' in line and "DEGRADED" in line
    reasons = _part(line, "readiness-reasons")
    items = re.findall(r"<li\b", reasons)
    assert len(items) == readiness_digest.REASONS_SHOWN + 1  # the first few, then "… and N more"
    text = _text(reasons)
    # The token first, then what stops accounts being paused at all, each line one kind of reason.
    assert text.startswith("The access token expires in")
    assert "act_296 is DISABLED: Meta refuses edits in it. — likewise act_297, act_298, act_299, act_300" in text
    assert "act_293: the token's user may not edit this account" in text
    assert "likewise act_294, act_295" in text
    # The development tier (and the pending campaigns, the unsettled accounts) are further down:
    # one line each, not one per account.
    lines = readiness_digest.digest(check).lines
    assert len(lines) == 6 and "… and 3 more reasons" in text
    assert lines[3].text.startswith("act_1 is on Meta's development tier") and len(lines[3].accounts) == 300
    assert 'href="/readiness/"' in line
    assert "8 NOT READY · 292 DEGRADED of 300 accounts" in _text(line)


def test_a_not_ready_check_says_why_first(operator: Client) -> None:
    check = _record(_token(scopes=("ads_read",)), [_account("act_1", 10), _unreachable("act_2")])
    assert check.verdict == "not_ready"

    line = _part(operator.get("/").content.decode(), "readiness-line")

    assert 'data-verdict="not_ready"' in line and "NOT READY" in line
    summary = _text(_part(line, "readiness-summary"))
    assert summary.startswith("NOT READY: The access token lacks the ads_management permission")
    reasons = _text(_part(line, "readiness-reasons"))  # the rest of what is wrong, the summary's not repeated
    assert "ads_management" not in reasons
    assert "act_2 cannot be read with this token: (#200) Permissions error" in reasons
    assert "1 NOT READY · 1 READY of 2 accounts" in _text(line)


def test_the_same_meta_error_in_many_accounts_is_one_line(operator: Client) -> None:
    unreadable = [
        _unreachable(f"act_{n}", f"(#100) Tried accessing nonexisting field [fbtrace_id Ab{n}x-Z]") for n in range(40)
    ]
    _record(_token(), [_account("act_ok", 10), *unreadable])

    reasons = _part(_part(operator.get("/").content.decode(), "readiness-line"), "readiness-reasons")

    assert len(re.findall(r"<li\b", reasons)) == 1
    assert "act_0 cannot be read with this token" in reasons and "and 34 more accounts" in _text(reasons)


def test_a_check_older_than_two_health_cycles_is_called_stale(operator: Client, settings) -> None:
    settings.HEALTH_CYCLE_INTERVAL_SECONDS = 3600
    _record(_token(), [_account("act_1", 10)], minutes_ago=119)
    assert 'id="readiness-stale"' not in operator.get("/").content.decode()

    _record(_token(), [_account("act_1", 10)], minutes_ago=121)
    ReadinessCheck.objects.filter(checked_at__gt=timezone.now() - timedelta(minutes=120)).delete()

    assert "stale" in _text(_part(operator.get("/").content.decode(), "readiness-stale"))


def test_before_any_check_the_line_says_so_with_the_button(operator: Client, viewer: Client) -> None:
    line = _part(operator.get("/").content.decode(), "readiness-line")
    assert "Readiness not checked yet" in line and 'id="readiness-check-button"' in line

    line = _part(viewer.get("/").content.decode(), "readiness-line")
    assert "Readiness not checked yet" in line and 'id="readiness-check-button"' not in line


def test_viewers_see_the_line_but_cannot_check(viewer: Client) -> None:
    check = _ready_agency()

    html = viewer.get("/").content.decode()

    assert check.summary in _text(_part(html, "readiness-line"))
    assert 'id="readiness-check-button"' not in html and "/readiness/check/" not in html
    assert 'id="emergency-stop-button"' not in html
    assert viewer.post("/readiness/check/").status_code == 403
    assert ReadinessCheck.objects.count() == 1


def test_the_dashboard_fragments_refresh_the_line(operator: Client) -> None:
    check = _ready_agency()

    fragments = operator.get("/fragments/").json()["fragments"]

    assert check.summary in _text(fragments["readiness"]) and 'name="next" value="/"' in fragments["readiness"]


def test_check_now_asks_meta_through_the_commander_with_the_operators_name(operator: Client, meta_sandbox) -> None:
    response = operator.post("/readiness/check/", {"next": "/"})

    assert response.status_code == 302 and response["Location"] == "/"
    check = ReadinessCheck.latest()
    assert check.executed_by == "olivia" and check.mode == "stub"
    page = operator.get("/").content.decode()
    assert f"Readiness checked: {check.summary}" in _text(page)  # the message
    summary = _part(page, "readiness-summary")  # Meta's errors make it long: cut, in full on hover
    assert markup.unescape(re.search(r'title="([^"]*)"', summary).group(1)) == check.summary
    assert check.summary in _text(_part(operator.get("/readiness/").content.decode(), "readiness-line"))


def test_check_now_goes_back_to_the_page_it_was_pressed_on_and_nowhere_else(operator: Client, meta_sandbox) -> None:
    assert operator.post("/readiness/check/", {"next": "/readiness/"})["Location"] == "/readiness/"
    assert operator.post("/readiness/check/", {"next": "https://evil.example/"})["Location"] == "/"
    assert operator.get("/readiness/check/").status_code == 405
    assert ReadinessCheck.objects.filter(executed_by="olivia").count() == 2


def test_check_now_counts_against_the_operators_command_budget(operator: Client, meta_sandbox, settings) -> None:
    settings.COMMAND_THROTTLE_RATE = "2/min"
    assert operator.post("/commands/health_check/", {"reason": ""}).status_code == 302
    assert operator.post("/readiness/check/").status_code == 302
    checks = ReadinessCheck.objects.count()  # the health check's own, and Check now's

    refused = operator.post("/readiness/check/")

    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert ReadinessCheck.objects.count() == checks


def test_the_readiness_page_shows_the_latest_check_in_full(operator: Client) -> None:
    expires = timezone.now() + timedelta(days=3)
    token = _token(expires_at=expires)
    older = [_record(_token(), [_account("act_1", 5)], minutes_ago=60 + n) for n in range(12)]
    check = _record(
        token,
        [
            _account("act_1", 100),
            _account("act_2", 80, tier="development_access"),
            _account("act_3", 5, user_tasks=("ANALYZE",)),
            _unreachable("act_4"),
        ],
        by="olivia",
    )
    assert check.verdict == "degraded" and older

    response = operator.get("/readiness/")

    assert response.status_code == 200
    html = response.content.decode()
    token_table = _text(_part(html, "readiness-token"))
    assert "SYSTEM_USER" in token_table and "ads_management , ads_read" in token_table
    assert "debug_token" in token_table and "The access token expires in" in token_table
    assert "in 2 days" in _text(_part(html, "token-expires")) or "in 3 days" in _text(_part(html, "token-expires"))
    rows = re.findall(r'<tr data-account="(act_\d+)" data-verdict="(\w+)"', _part(html, "readiness-account-list"))
    assert rows == [("act_3", "not_ready"), ("act_4", "not_ready"), ("act_2", "degraded"), ("act_1", "ready")]
    table = _text(_part(html, "readiness-account-list"))
    assert "not editable (ANALYZE)" in table and "unreachable" in table and "development" in table
    assert "120.0 ms" in table and "may not edit this account" in table
    dev = _text(re.search(r'<tr data-account="act_2".*?</tr>', html, re.S).group(0))
    room = policy.headroom(80, "development_access", 0.0, 120.0, ITEM_MS)
    assert room.pending and f"{room.at_once} / {room.pending}" in dev  # a development window pauses few
    recent = re.findall(r'<tr data-verdict="(\w+)"><td>', _part(html, "readiness-recent"))
    assert len(recent) == 10 and recent[0] == "degraded"


def test_the_readiness_page_pages_and_filters_300_accounts(operator: Client) -> None:
    accounts = [_account(f"act_{n}", 10) for n in range(1, 298)] + [_unreachable(f"act_x{n}") for n in range(3)]
    _record(_token(), accounts)

    first = operator.get("/readiness/").content.decode()
    rows = re.findall(r'<tr data-account="([\w]+)"', _part(first, "readiness-account-list"))
    assert len(rows) == readiness_digest.PAGE_SIZE and rows[:3] == ["act_x0", "act_x1", "act_x2"]
    assert "page 1 of 6" in first

    unready = operator.get("/readiness/?verdict=not_ready").content.decode()
    assert re.findall(r'<tr data-account="([\w]+)"', unready) == ["act_x0", "act_x1", "act_x2"]
    assert operator.get("/readiness/?verdict=nonsense").status_code == 400


def test_the_readiness_page_before_any_check(viewer: Client) -> None:
    response = viewer.get("/readiness/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "Readiness not checked yet" in html and "No check yet." in html
    assert 'id="readiness-check-button"' not in html


def test_the_stop_confirmation_repeats_each_accounts_readiness_and_keeps_the_stop_button(
    operator: Client, meta_sandbox
) -> None:
    accounts = sorted(a["id"] for a in meta_sandbox.state()["accounts"])
    assert len(accounts) == 2
    check = _record(
        _token(),
        [_account(accounts[0], 10), _account(accounts[1], 10, tier="development_access"), _unreachable("act_404")],
    )

    response = operator.get("/emergency-stop/")

    assert response.status_code == 200
    html = response.content.decode()
    assert check.summary in _text(_part(html, "stop-readiness"))
    assert 'id="confirm-stop"' in html and "STOP EVERYTHING NOW" in html
    assert html.index('id="stop-readiness"') < html.index('id="stop-form"')
    stakes = _part(html, "stop-stakes")
    ready_row = re.search(rf'<tr data-account="{accounts[0]}".*?</tr>', stakes, re.S).group(0)
    assert 'data-readiness="ready"' in ready_row and "READY" in _text(ready_row)
    slow_row = _text(re.search(rf'<tr data-account="{accounts[1]}".*?</tr>', stakes, re.S).group(0))
    assert "DEGRADED" in slow_row and f"{accounts[1]} is on Meta's development tier" in slow_row
    # An account the preview does not list, but the check could not read: named, not hidden.
    unlisted = _text(_part(html, "stop-unready-unlisted"))
    assert "act_404" in unlisted and "NOT READY" in unlisted and "Permissions error" in unlisted


def test_a_not_ready_check_never_blocks_the_stop(operator: Client, meta_sandbox) -> None:
    _record(_token(scopes=()), [_unreachable("act_1")])

    page = operator.get("/emergency-stop/").content.decode()
    assert "NOT READY" in _text(_part(page, "stop-readiness")) and 'id="confirm-stop"' in page
    response = operator.post("/emergency-stop/", {"reason": "Spend spike", "pause_campaigns": "on"})

    assert response.status_code == 302 and TowerState.get().emergency_stop_active
    assert meta_sandbox.campaigns(status="ACTIVE") == []
