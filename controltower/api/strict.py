"""Request bodies: JSON objects with only their declared fields, each of its own JSON type.

DRF's fields coerce as if the body were a form: 0 or "false" is a boolean, 12 a string, "5" or
5.0 an integer, 5 a UUID; and a serializer ignores fields it does not declare, so a typo such as
`"dry-run": true` would run a real emergency stop. In a JSON body each of these is the client's
mistake: a 400 with field errors. The schema says so too (`additionalProperties: false`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular.extensions import OpenApiSerializerExtension, OpenApiSerializerFieldExtension
from rest_framework import exceptions, serializers

from meta_modules.models import MetaModule

NUL = "\x00"
# One or more characters, none NUL: drf-spectacular adds `""` as a oneOf alternative for blank-allowed
# fields, so this pattern must not match `""` itself.
NO_NUL_PATTERN = r"^[^\u0000]+$"
MODULE_CODE_MAX = 16


class RequestTooLarge(exceptions.APIException):
    """A body over DATA_UPLOAD_MAX_MEMORY_SIZE (Django refuses it with an HTML 400 of its own)."""

    status_code = 413
    default_detail = "The request body is too large."
    default_code = "request_too_large"


# A request body that may carry only the declared fields (a comment: drf-spectacular would take a
# docstring for the description of every request body).
class JsonObjectSerializer(serializers.Serializer):
    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class JsonObjectSchema(OpenApiSerializerExtension):
    target_class = JsonObjectSerializer
    match_subclasses = True

    def map_serializer(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        return {**schema, "additionalProperties": False}


class CharFieldSchema(OpenApiSerializerFieldExtension):
    """Request text (bodies and query parameters) has no NUL: DRF's CharField refuses it, as PostgreSQL
    could not store it. The schema says so, unless the field's own pattern already rules it out."""

    target_class = serializers.CharField
    match_subclasses = True

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        if direction == "request" and not any(isinstance(v, RegexValidator) for v in self.target.validators):
            schema["pattern"] = NO_NUL_PATTERN
        return schema


class _JsonTyped:
    """Refuses a value of another JSON type before the DRF field coerces it."""

    json_type: type = str
    type_error = "invalid"

    def to_internal_value(self, data: Any) -> Any:
        # bool is an int to Python, never to JSON.
        if not isinstance(data, self.json_type) or (isinstance(data, bool) and self.json_type is not bool):
            self.fail(self.type_error, input=data)
        return super().to_internal_value(data)


class JsonBooleanField(_JsonTyped, serializers.BooleanField):
    json_type = bool


class JsonCharField(_JsonTyped, serializers.CharField):
    """A string the database can store (DRF's CharField already refuses NUL characters)."""

    default_error_messages = {"unencodable": "Not valid Unicode text (a lone surrogate)."}

    def to_internal_value(self, data: Any) -> str:
        text = super().to_internal_value(data)
        if not encodable(text):
            self.fail("unencodable")
        return text


class JsonRegexField(_JsonTyped, serializers.RegexField):
    pass


class JsonIntegerField(_JsonTyped, serializers.IntegerField):
    json_type = int


class JsonUUIDField(_JsonTyped, serializers.UUIDField):
    pass


class ModuleCodeField(JsonCharField):
    """The code of a registered module, as given (" 10.7" is not 10.7). The schema says only "a string":
    external modules are registered at run time, and the schema must not depend on the database."""

    default_error_messages = {"unknown": "Unknown module: {input}."}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=MODULE_CODE_MAX, trim_whitespace=False, **kwargs)

    def run_validation(self, data: Any = serializers.empty) -> str:
        code = super().run_validation(data)  # type, length and NUL first: only a plausible code reaches the database
        if not MetaModule.objects.filter(code=code).exists():
            self.fail("unknown", input=code)
        return code


def encodable(text: str) -> bool:
    """JSON may carry a lone surrogate (\\udc00): valid Python text that no database encoding can hold."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def storable_json(value: Any) -> bool:
    """True when every string in a JSON value, keys included, is storable text (jsonb refuses \\u0000)."""
    if isinstance(value, str):
        return NUL not in value and encodable(value)
    if isinstance(value, dict):
        return all(storable_json(key) and storable_json(item) for key, item in value.items())
    if isinstance(value, list):
        return all(storable_json(item) for item in value)
    return True
