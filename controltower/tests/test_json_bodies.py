"""Request bodies mean one thing: a key given twice, or nesting past MAX_JSON_DEPTH, is a 400."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from controltower.api.parsers import MAX_JSON_DEPTH, exceeds_depth, unique_object
from controltower.models import ControlTowerRun, TowerState
from controltower.roles import OPERATORS_GROUP
from tests.support import api_client

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("synced", "meta_sandbox")]

API = "/meta/control-tower"


@pytest.fixture
def operator() -> APIClient:
    return api_client("olivia", OPERATORS_GROUP)


def _post(client: APIClient, path: str, raw: str):
    return client.post(f"{API}/{path}", raw, content_type="application/json")


def _nested(levels: int) -> str:
    return '{"reason": "x", "dry_run": true, "deep": ' + "[" * levels + "]" * levels + "}"


def test_a_repeated_dry_run_key_is_a_400_naming_it_and_stops_nothing(operator, meta_sandbox) -> None:
    active = {c["id"] for c in meta_sandbox.campaigns(status="ACTIVE")}

    response = _post(operator, "emergency-stop", '{"reason": "spike", "dry_run": true, "dry_run": false}')

    assert response.status_code == 400
    assert response.json() == {"dry_run": ["Duplicate key in JSON body."]}
    assert not TowerState.get().emergency_stop_active and not ControlTowerRun.objects.exists()
    assert {c["id"] for c in meta_sandbox.campaigns(status="ACTIVE")} == active


def test_a_repeated_key_inside_a_nested_object_is_a_400_naming_it(operator) -> None:
    response = _post(operator, "command", '{"command_type": "health_check", "parameters": {"a": 1, "a": 2}}')

    assert response.status_code == 400 and response.json() == {"a": ["Duplicate key in JSON body."]}
    assert not ControlTowerRun.objects.exists()


@pytest.mark.parametrize("levels", [MAX_JSON_DEPTH, 1_000, 100_000])
def test_nesting_past_the_bound_is_a_json_400(operator, levels: int) -> None:
    response = _post(operator, "emergency-stop", _nested(levels))  # the object itself is one more level

    assert response.status_code == 400 and response["Content-Type"] == "application/json"
    assert response.json() == {"detail": f"JSON nested deeper than {MAX_JSON_DEPTH} levels."}
    assert not TowerState.get().emergency_stop_active


def test_nesting_within_the_bound_reaches_the_view(operator) -> None:
    response = _post(operator, "emergency-stop", _nested(MAX_JSON_DEPTH - 1))

    assert response.status_code == 400 and response.json() == {"deep": ["Unknown field."]}


def test_the_same_key_in_sibling_objects_is_not_a_duplicate() -> None:
    assert unique_object([("a", {"k": 1}), ("b", {"k": 2})]) == {"a": {"k": 1}, "b": {"k": 2}}


@pytest.mark.parametrize(
    ("value", "limit", "exceeds"),
    [
        (1, 0, False),
        ({}, 0, True),
        ({}, 1, False),
        ({"a": [1, {"b": []}]}, 3, True),
        ({"a": [1, {"b": []}]}, 4, False),
        ([[], [[[]]]], 3, True),
        ([[], [[[]]]], 4, False),
    ],
)
def test_exceeds_depth_counts_objects_and_arrays(value, limit: int, exceeds: bool) -> None:
    assert exceeds_depth(value, limit) is exceeds
