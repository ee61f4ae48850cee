"""The sampler registry: each sampler is a config dataclass plus ``run(key, target, config)``.

Example:
    >>> import bayeswb as bw
    >>> "nuts" in bw.samplers.names()
    True
    >>> bw.samplers.get("nuts").make_config(num_chains=2).num_chains
    2
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

from bayeswb.chunks import ChainKernel
from bayeswb.config import SamplerConfig, make_config
from bayeswb.draws import Draws
from bayeswb.registry import Registry

RunFn = Callable[[Any, Any, Any], Draws]


@dataclasses.dataclass(frozen=True)
class SamplerSpec:
    """A registered sampler: its name, config class and pure ``run`` function."""

    name: str
    config_cls: type[SamplerConfig]
    run: RunFn
    family: str
    kernel: ChainKernel | None = None  # MCMC samplers in pieces: these also run in chunks

    def make_config(self, **options: Any) -> SamplerConfig:
        """Validated config; unknown options and bad values are ValueErrors naming them."""
        return make_config(self.config_cls, options)


_registry: Registry[SamplerSpec] = Registry("sampler")


def register(
    name: str,
    config_cls: type[SamplerConfig],
    family: str,
    kernel: ChainKernel | None = None,
) -> Callable[[RunFn], RunFn]:
    """Decorator registering ``run(key, target, config) -> Draws`` under ``name``.

    An MCMC sampler that also gives its :class:`~bayeswb.chunks.ChainKernel` (and whose
    ``run`` is :func:`~bayeswb.chunks.run_whole` of it) can run in chunks, with
    checkpoints (``bw.sample(..., chunk_size=...)``).
    """

    def decorate(run: RunFn) -> RunFn:
        _registry.add(name, SamplerSpec(name, config_cls, run, family, kernel))
        return run

    return decorate


def names() -> list[str]:
    """Registered sampler names."""
    return _registry.names()


def get(name: str) -> SamplerSpec:
    """The sampler registered as ``name``; KeyError listing close names otherwise."""
    return _registry.get(name)


def _register_all() -> None:
    # every module of this package registers its entries on import
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        importlib.import_module(f"{__name__}.{module.name}")


_register_all()
