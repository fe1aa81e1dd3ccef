"""The request schemas of ``openapi.json`` as validators whose work a hostile request cannot inflate.

jsonschema applies every keyword and reports every error, so a ``vector`` of 2.7 M items would have
each item checked against ``items`` (12 s) before ``maxItems`` could refuse it. Validation therefore
runs twice over the same schema: first only the keywords that bound a value's size (``maxItems``,
``maxLength``, ``maxProperties``), reached through ``properties`` and ``$ref`` alone, so no array or
object of the request is iterated; then every keyword, on a request now known to be small.

Error messages describe a value by its kind and size instead of quoting it, so an error costs the same
whether the value is a short string, 5 MB of base64, or an array nested a thousand levels deep.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final

from jsonschema import Draft202012Validator, ValidationError, validators
from jsonschema.exceptions import best_match
from jsonschema.protocols import Validator

_QUOTED_CHARS: Final = 40


def _describe(value: object) -> str:
    """A short description of a JSON value: arrays and objects by their size, long strings cut."""
    if isinstance(value, list):
        return f"an array of {_counted(len(value), 'item')}"
    if isinstance(value, dict):
        return f"an object of {_counted(len(value), 'member')}"
    if isinstance(value, str) and len(value) > _QUOTED_CHARS:
        return f"{value[:_QUOTED_CHARS]!r}… ({len(value)} characters)"
    return repr(value)


def _counted(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _max_items(validator: Validator, limit: int, instance: Any, _schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "array") and len(instance) > limit:
        yield ValidationError(f"has {len(instance)} items; at most {limit} are allowed")


def _max_length(validator: Validator, limit: int, instance: Any, _schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and len(instance) > limit:
        yield ValidationError(f"has {len(instance)} characters; at most {limit} are allowed")


def _max_properties(
    validator: Validator, limit: int, instance: Any, _schema: Any
) -> Iterator[ValidationError]:
    if validator.is_type(instance, "object") and len(instance) > limit:
        yield ValidationError(f"has {len(instance)} members; at most {limit} are allowed")


def _type(validator: Validator, types: Any, instance: Any, _schema: Any) -> Iterator[ValidationError]:
    allowed = types if isinstance(types, list) else [types]
    if not any(validator.is_type(instance, kind) for kind in allowed):
        yield ValidationError(f"{_describe(instance)} is not of type {', '.join(map(repr, allowed))}")


_SIZES: Final = {"maxItems": _max_items, "maxLength": _max_length, "maxProperties": _max_properties}

RequestValidator = validators.extend(Draft202012Validator, {**_SIZES, "type": _type})
"""Draft 2020-12 with messages that describe values instead of quoting them."""

SizeValidator = validators.create(
    meta_schema=Draft202012Validator.META_SCHEMA,
    validators={
        "$ref": Draft202012Validator.VALIDATORS["$ref"],
        "properties": Draft202012Validator.VALIDATORS["properties"],
        **_SIZES,
    },
    type_checker=Draft202012Validator.TYPE_CHECKER,
)
"""Only the size bounds, and only where ``properties`` and ``$ref`` lead: never iterates a value."""


class BoundedSchema:
    """One named schema of the document, validated sizes first (see the module docstring)."""

    def __init__(self, name: str, components: Mapping[str, Any]) -> None:
        schema = {"$ref": f"#/components/schemas/{name}", "components": components}
        self._sizes = SizeValidator(schema)
        self._everything = RequestValidator(schema)

    def first_error(self, instance: object) -> ValidationError | None:
        """The most relevant problem of ``instance``, or None when it is valid."""
        too_large = best_match(self._sizes.iter_errors(instance))
        if too_large is not None:
            return too_large
        return best_match(self._everything.iter_errors(instance))
