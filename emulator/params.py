"""Stripe's form-encoded parameters: bracket keys into nested values, then per-endpoint specs.

Specs reject what Stripe rejects: unknown keys, missing required ones, bad integers and enums."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from emulator import errors

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")

Nested = dict[str, Any]


def parse_pairs(pairs: Iterable[tuple[str, str]]) -> Nested:
    """`a[b][0]=x&a[b][]=y` -> {"a": {"b": ["x", "y"]}}; both index styles become lists."""
    root: Nested = {}
    for key, value in pairs:
        match = _KEY.match(key)
        if match is None:
            raise errors.invalid(key, f"Invalid parameter name: {key}")
        path = [match.group(1), *_SEGMENT.findall(match.group(2))]
        node = root
        for depth, segment in enumerate(path):
            name = str(len(node)) if segment == "" else segment
            last = depth == len(path) - 1
            existing = node.get(name)
            if last:
                if isinstance(existing, dict):
                    raise errors.invalid(key, f"Invalid hash: {key} is also given with brackets")
                node[name] = value
            else:
                if existing is None:
                    existing = node[name] = {}
                elif not isinstance(existing, dict):
                    raise errors.invalid(key, f"Invalid hash: {key} is also given as a value")
                node = existing
    return _lists(root)


def _lists(node: Nested) -> Nested:
    out: Nested = {}
    for name, value in node.items():
        if isinstance(value, dict):
            value = _lists(value)
            if value and all(k.isdigit() for k in value):
                value = [value[k] for k in sorted(value, key=int)]
        out[name] = value
    return out


def _label(prefix: str, name: str) -> str:
    return f"{prefix}[{name}]" if prefix else name


class Spec(ABC):
    @abstractmethod
    def parse(self, value: Any, name: str) -> Any:
        """The validated value, or a StripeError naming `name`."""


@dataclass(frozen=True)
class String(Spec):
    max_length: int = 5000

    def parse(self, value: Any, name: str) -> Any:
        if not isinstance(value, str):
            raise errors.invalid(name, f"Invalid string: {name} must be a string")
        if len(value) > self.max_length:
            raise errors.invalid(
                name, f"Invalid string: must be at most {self.max_length} characters"
            )
        return value


@dataclass(frozen=True)
class Integer(Spec):
    minimum: int | None = None
    maximum: int | None = None

    def parse(self, value: Any, name: str) -> Any:
        code = "parameter_invalid_integer"
        if not isinstance(value, str) or not re.fullmatch(r"-?\d+", value.strip()):
            raise errors.invalid(name, f"Invalid integer: {value}", code)
        number = int(value)
        if self.minimum is not None and number < self.minimum:
            raise errors.invalid(
                name, f"This value must be greater than or equal to {self.minimum}.", code
            )
        if self.maximum is not None and number > self.maximum:
            raise errors.invalid(
                name, f"This value must be less than or equal to {self.maximum}.", code
            )
        return number


@dataclass(frozen=True)
class Boolean(Spec):
    def parse(self, value: Any, name: str) -> Any:
        if value not in ("true", "false"):
            raise errors.invalid(name, f"Invalid boolean: {value}")
        return value == "true"


@dataclass(frozen=True)
class Enum(Spec):
    values: tuple[str, ...]

    def parse(self, value: Any, name: str) -> Any:
        if value not in self.values:
            options = self.values[0]
            if len(self.values) > 1:
                options = ", ".join(self.values[:-1]) + f", or {self.values[-1]}"
            raise errors.invalid(name, f"Invalid {name}: must be one of {options}")
        return value


@dataclass(frozen=True)
class Array(Spec):
    item: Spec
    max_items: int | None = None

    def parse(self, value: Any, name: str) -> Any:
        if isinstance(value, str) and value == "":
            return []
        if not isinstance(value, list):
            raise errors.invalid(name, f"Invalid array: {name} must be an array")
        if self.max_items is not None and len(value) > self.max_items:
            raise errors.invalid(name, f"Invalid array: at most {self.max_items} items")
        return [self.item.parse(v, f"{name}[{i}]") for i, v in enumerate(value)]


@dataclass(frozen=True)
class Object(Spec):
    fields: Mapping[str, Spec]
    required: frozenset[str] = field(default_factory=frozenset)

    def parse(self, value: Any, name: str) -> Any:
        if not isinstance(value, dict):
            raise errors.invalid(name, f"Invalid hash: {name} must be a hash")
        return validate(value, self, prefix=name)


@dataclass(frozen=True)
class IntegerOrRange(Spec):
    """`created=123` or `created[gte]=100&created[lt]=200`."""

    def parse(self, value: Any, name: str) -> Any:
        if isinstance(value, dict):
            return validate(value, RANGE, prefix=name)
        return Integer().parse(value, name)


RANGE = Object({op: Integer() for op in ("gt", "gte", "lt", "lte")})


def validate(values: Nested, spec: Object, *, prefix: str = "") -> Nested:
    for name in values:
        if name not in spec.fields:
            raise errors.unknown(_label(prefix, name))
    for name in sorted(spec.required):
        if name not in values or values[name] in ("", [], {}):
            raise errors.missing(_label(prefix, name))
    return {
        name: spec.fields[name].parse(value, _label(prefix, name)) for name, value in values.items()
    }


def endpoint(fields: Mapping[str, Spec], required: Iterable[str] = ()) -> Object:
    """Every Stripe endpoint also accepts expand[]; it changes nothing on this surface."""
    return Object({**fields, "expand": Array(String())}, frozenset(required))


PAGINATION: dict[str, Spec] = {
    "limit": Integer(1, 100),
    "starting_after": String(),
    "ending_before": String(),
}
