"""The sampler families; importing this package registers every sampler.

Each subpackage or module is a family and registers its samplers on import (with
:func:`register`); the registry itself lives in the core (:mod:`bayeswb.core.sampler`).

Example:
    >>> import bayeswb as bw
    >>> "nuts" in bw.samplers.names()
    True
    >>> bw.samplers.get("nuts").make_config(num_chains=2).num_chains
    2
"""

from __future__ import annotations

import importlib
import pkgutil

from bayeswb.core.sampler import SAMPLERS, SamplerSpec
from bayeswb.core.sampler import register_sampler as register

__all__ = ["SamplerSpec", "get", "names", "register"]


def names() -> list[str]:
    """Registered sampler names."""
    return SAMPLERS.names()


def get(name: str) -> SamplerSpec:
    """The sampler registered as ``name``; KeyError listing close names otherwise."""
    return SAMPLERS.get(name)


def _register_all() -> None:
    # every module and subpackage of this package registers its entries on import
    for module in pkgutil.walk_packages(__path__, prefix=f"{__name__}."):
        importlib.import_module(module.name)


_register_all()
