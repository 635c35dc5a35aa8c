"""The API's only body parser: JSON that means one thing.

Python's json keeps the last of repeated keys, so `{"dry_run": true, "dry_run": false}` was a real
emergency stop; here a repeated key is a 400 naming it. Nesting is bounded (MAX_JSON_DEPTH): no
request body of this API goes deeper than a few levels, and Python's decoder recurses, so ~1,000
levels would otherwise end in a RecursionError (an HTML 500).
"""

from __future__ import annotations

import codecs
from typing import Any

from rest_framework import exceptions, parsers
from rest_framework.utils import json

# Levels of objects and arrays a body may nest: {"a": {"b": [1]}} has 3.
MAX_JSON_DEPTH = 32
DUPLICATE_KEY = "Duplicate key in JSON body."
TOO_DEEP = f"JSON nested deeper than {MAX_JSON_DEPTH} levels."


class DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """object_pairs_hook: an object's pairs as a dict, refusing a key given twice."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise DuplicateKey(key)
        obj[key] = value
    return obj


def exceeds_depth(value: Any, limit: int) -> bool:
    """True when objects and arrays nest more than `limit` levels (breadth first: no recursion)."""
    level, depth = [value], 0
    while level:
        containers = [item for item in level if isinstance(item, (dict, list))]
        if not containers:
            return False
        depth += 1
        if depth > limit:
            return True
        level = [child for c in containers for child in (c.values() if isinstance(c, dict) else c)]
    return False


class StrictJSONParser(parsers.JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict[str, Any] | None = None) -> Any:
        encoding = parsers.get_encoding(parser_context or {})
        try:
            data = json.load(
                codecs.getreader(encoding)(stream),
                object_pairs_hook=unique_object,
                parse_constant=json.strict_constant if self.strict else None,
            )
        except DuplicateKey as exc:
            raise exceptions.ValidationError({exc.key: [DUPLICATE_KEY]}) from None
        except RecursionError:
            raise exceptions.ParseError(TOO_DEEP) from None
        except ValueError as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}") from None
        if exceeds_depth(data, MAX_JSON_DEPTH):
            raise exceptions.ParseError(TOO_DEEP)
        return data
