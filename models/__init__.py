"""The model registry: named targets with their ground truth.

Example:
    >>> import bayeswb as bw
    >>> t = bw.models.get("funnel", dim=5)
    >>> t.dim, t.log_z
    (5, 0.0)
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

from bayeswb.core.registry import MODELS as _registry
from bayeswb.core.registry import build_model, model_parameters
from bayeswb.core.target import Target

Factory = Callable[..., Target]


def register(name: str) -> Callable[[Factory], Factory]:
    """Decorator registering a factory ``f(**params) -> Target`` under ``name``.

    Example:
        >>> import jax.numpy as jnp
        >>> @register("my_std_normal_doc")
        ... def my_std_normal(dim: int = 2) -> Target:
        ...     return Target.from_logdensity(lambda x: -0.5 * x @ x, dim, name="std")
        >>> get("my_std_normal_doc", dim=3).dim
        3
        >>> unregister("my_std_normal_doc")
    """

    def decorate(factory: Factory) -> Factory:
        _registry.add(name, factory)
        return factory

    return decorate


def unregister(name: str) -> None:
    """Remove the model registered as ``name`` (KeyError if there is none)."""
    _registry.remove(name)


def names() -> list[str]:
    """Registered model names."""
    return _registry.names()


def parameters(name: str) -> dict[str, Any]:
    """The parameters model ``name`` takes, with their defaults (``inspect.Parameter.empty``
    for a required one).

    Example:
        >>> parameters("funnel")["dim"]
        10
    """
    return model_parameters(name)


def get(name: str, **params: Any) -> Target:
    """Build the target registered as ``name`` with keyword ``params``.

    An unknown name is a KeyError listing close names; an unknown parameter is a
    ValueError naming it and the accepted ones.
    """
    return build_model(name, **params)


def _register_all() -> None:
    # every module and subpackage of this package registers its entries on import
    for module in pkgutil.walk_packages(__path__, prefix=f"{__name__}."):
        importlib.import_module(module.name)


_register_all()
