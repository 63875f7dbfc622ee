"""attrs validators and converters shared by the specs of ``topology.py`` (text or None, lists of a class)."""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from . import rules
from .errors import ValidationError


def _opt_text(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if value is not None and not isinstance(value, str):
        raise ValidationError(rules.describe(instance), attribute.name, "text (a string) or None", value)


def _tuple_of(cls: type, what: str):  # noqa: ANN202
    def check(instance: object, attribute: attrs.Attribute, value: object) -> None:
        for i, item in enumerate(value):  # type: ignore[attr-defined]
            if not isinstance(item, cls):
                raise ValidationError(rules.describe(instance), f"{attribute.name}[{i}]", f"each is {what}", item)
    return check


def _to_tuple(value: object) -> object:
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, Iterable):
        return value
    return tuple(value)


def _seq(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if not isinstance(value, tuple):
        raise ValidationError(rules.describe(instance), attribute.name, "a list", value)
