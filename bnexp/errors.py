"""Errors that carry enough context to fix the input that caused them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class ConfigError(ValueError):
    """A configuration value is impossible or unknown.

    The message always names the offending key and value and, where there is a finite set of valid
    values, lists them, e.g. ``chain.norm='bn_foo' is not valid; choose one of: bn_center, bn_theory, none``.
    """

    def __init__(self, key: str, value: Any, expected: str | Iterable[Any] | None = None):
        self.key, self.value = key, value
        if expected is None:
            msg = f"{key}={value!r} is not valid"
        elif isinstance(expected, str):
            msg = f"{key}={value!r} is not valid: {expected}"
        else:
            choices = ", ".join(str(c) for c in sorted(expected, key=str))
            msg = f"{key}={value!r} is not valid; choose one of: {choices}"
        super().__init__(msg)


def choose(key: str, value: Any, registry: Iterable[Any]) -> Any:
    """Return ``value`` if it is in ``registry`` (a mapping or iterable), else raise :class:`ConfigError`."""
    if value not in registry:
        raise ConfigError(key, value, registry)
    return value
