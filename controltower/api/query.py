"""Query parameters: each one declared, given once, without NUL, then validated by a serializer.

DRF reads a QueryDict like a submitted form: an empty value counts as absent and a repeated one
keeps its last value, so `?until=`, `?since=a&since=b` or a misspelt filter would silently answer
an unfiltered page. Here each of them is a 400 naming the parameter. NUL is refused for every
parameter in one place: PostgreSQL cannot store or compare text containing it.
"""

from __future__ import annotations

from rest_framework import serializers
from rest_framework.request import Request

NUL = "\x00"
# DRF's renderer override (?format=json for the browsable API), consumed before the view runs;
# validated here only where a serializer declares it.
RENDERER_OVERRIDE = "format"


def query_errors(params: dict[str, list[str]], declared: set[str]) -> dict[str, list[str]]:
    """Field errors of the parameters themselves, before their values are validated."""
    errors = {}
    for name, values in params.items():
        if NUL in name or any(NUL in value for value in values):
            errors[name] = ["Null characters are not allowed."]
        elif name not in declared:
            errors[name] = ["Unknown parameter."]
        elif len(values) > 1:
            errors[name] = ["Give this parameter once."]
    return errors


def validated_query(serializer_class: type[serializers.Serializer], request: Request) -> serializers.Serializer:
    """The request's query parameters, validated by `serializer_class` (raises a 400)."""
    declared = set(serializer_class().fields)
    params = {
        name: values for name, values in request.query_params.lists() if name != RENDERER_OVERRIDE or name in declared
    }
    errors = query_errors(params, declared)
    if errors:
        raise serializers.ValidationError(errors)
    # A plain dict, not the QueryDict: an empty value is then a value, and invalid.
    serializer = serializer_class(data={name: values[0] for name, values in params.items()})
    serializer.is_valid(raise_exception=True)
    return serializer
