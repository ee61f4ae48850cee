"""A name -> entry registry with helpful errors; the model registry (samplers: sampler.py)."""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from bayeswb.core.config import plain

Entry = TypeVar("Entry")


class Registry(Generic[Entry]):
    """Maps names to entries; an unknown name is a KeyError that lists the closest names.

    Example:
        >>> registry = Registry("model")
        >>> registry.add("funnel", object())
        >>> registry.names()
        ['funnel']
    """

    def __init__(self, kind: str, provider: str | None = None):
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        # the package that registers the entries (plugins: named, not imported here),
        # imported the first time the registry is read. Its import registers them all,
        # unless it has ``load(name)``: that registers the entry ``name`` (with whatever
        # else its module holds), and ``load(None)`` every entry
        self._provider = provider

    def _provided(self, name: str | None = None) -> dict[str, Entry]:
        """The entries, once the provider has registered ``name`` (None: all of them)."""
        if self._provider is None or (name is not None and name in self._entries):
            return self._entries
        load = getattr(importlib.import_module(self._provider), "load", None)
        if load is not None and name is not None:
            load(name)
            if name in self._entries:
                return self._entries
        if load is not None:
            load(None)  # every entry: an unknown name is looked for everywhere first
        self._provider = None
        return self._entries

    def add(self, name: str, entry: Entry) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry

    def remove(self, name: str) -> None:
        self.get(name)  # an unknown name is the usual KeyError
        del self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._provided())

    def get(self, name: str) -> Entry:
        if name not in self._provided(name):
            close = difflib.get_close_matches(str(name), self._entries, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise KeyError(
                f"unknown {self.kind} {name!r}{hint} (known: {', '.join(self.names())})"
            )
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._provided(name if isinstance(name, str) else None)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


# model name -> factory ``f(**params) -> Target``; filled by bayeswb.models on import
MODELS: Registry[Any] = Registry("model", provider="bayeswb.models")


def model_parameters(name: str) -> dict[str, Any]:
    """The parameters model ``name`` takes, with their defaults."""
    factory = MODELS.get(name)
    return {p.name: p.default for p in inspect.signature(factory).parameters.values()}


def build_model(name: str, **params: Any) -> Any:
    """The target of model ``name`` with keyword ``params`` (see ``bayeswb.models.get``);
    its ``parameters`` are all of the model's parameters (defaults filled in), so that a
    checkpoint or result can rebuild it.

    Example:
        >>> build_model("funnel", scale=0.5).parameters
        {'dim': 10, 'scale': 0.5}
    """
    factory = MODELS.get(name)
    accepted = model_parameters(name)
    for param in params:
        if param not in accepted:
            raise ValueError(
                f"unknown parameter {param!r} for model {name!r} "
                f"(accepted: {', '.join(accepted) or 'none'})"
            )
    given = {key: plain(value) for key, value in params.items()}  # np.int64(3) as 3
    return dataclasses.replace(factory(**given), parameters=accepted | given)
