"""One kind of registry for every choice made by name in a config: norms, activations, initialisations, models.

A :class:`Registry` maps config names to constructors for one config key (``norm.name``, ``act.name``,
``init.name``, ``model.name``); looking up an unknown name raises
``ConfigError(key, name, valid choices)``, e.g. ``norm.name='bn_foo' is not valid; choose one of: bn_center,
bn_nocenter, bn_theory, bn_torch, none``. A new norm (activation, init, model) is one ``register`` call — or
one entry where the registry is built — and every config, model and test sees it.

It iterates over its names and answers ``name in registry`` like a mapping, so ``errors.choose`` and
``sorted(NORMS)`` work; it is deliberately not a ``dict`` (``get`` raises instead of returning a default).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

from bnexp.errors import ConfigError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Config names → entries (constructors, functions) for the config key ``key``."""

    def __init__(self, key: str, entries: Mapping[str, T] | None = None):
        self.key = key
        self._entries: dict[str, T] = dict(entries or {})

    def get(self, name: object, key: str | None = None) -> T:
        """The entry of ``name``; an unknown name raises ``ConfigError(key or self.key, name, self.names)``.

        ``key`` names the config key in the error where the name came from elsewhere (e.g. ``chain.act``).
        """
        if name not in self:
            raise ConfigError(key or self.key, name, self.names)
        return self._entries[name]  # type: ignore[index]

    def register(self, name: str, entry: T) -> T:
        """Add ``entry`` under ``name`` (a name is registered once); returns ``entry``."""
        if name in self._entries:
            raise ValueError(f"{self.key}: {name!r} is already registered")
        self._entries[name] = entry
        return entry

    @property
    def names(self) -> tuple[str, ...]:
        """The valid names, in registration order."""
        return tuple(self._entries)

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._entries
        except TypeError:  # an unhashable config value (a list) is no name
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.key!r}: {', '.join(self._entries)})"
