"""Name → object registries (like timm's ``@register_model``): one entry per method/arch/dataset.

A lookup of an unknown name raises :class:`~flatkd.errors.FlatkdError` naming the valid choices,
so the CLI can print one clear line and exit 2.
"""
from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from .errors import FlatkdError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """A named table of entries, filled by the ``register`` decorator."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@REG.register("name")`` adds the decorated object under ``name``."""

        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise FlatkdError(
                f"unknown {self.kind} {name!r}; valid choices: {', '.join(self.names())}"
                + did_you_mean(name, self.names())
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
