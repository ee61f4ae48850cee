"""bayeswb: a Bayesian inference and sampling workbench.

Example:
    >>> import bayeswb as bw
    >>> t = bw.models.get("funnel", dim=10)
    >>> r = bw.sample(t, "nuts", seed=0, num_chains=2, num_samples=200, num_warmup=200)
    >>> sorted(bw.score(r, t))[:2]
    ['abs_mean_error_max', 'mean_z_max']

``import bayeswb`` itself is instant: the public names below are imported on first use
(PEP 562), which also turns on the compilation cache (:mod:`bayeswb.execution.compile_cache`),
so that ``bayeswb --help`` does not wait for JAX, ArviZ and every sampler to load.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_PUBLIC = {
    "Draws": "bayeswb.core.draws",
    "MinibatchData": "bayeswb.core.target",
    "NumpyroModel": "bayeswb.core.target",
    "Reference": "bayeswb.core.target",
    "Result": "bayeswb.core.result",
    "Target": "bayeswb.core.target",
    "load": "bayeswb.core.result",
    "log_likelihood": "bayeswb.core.model_data",
    "predictive": "bayeswb.core.model_data",
    "prior_predictive": "bayeswb.core.model_data",
    "resume": "bayeswb.execution.sample",
    "sample": "bayeswb.execution.sample",
    "score": "bayeswb.core.diagnostics",
    "set_compile_cache": "bayeswb.execution.compile_cache",
    "summary": "bayeswb.core.diagnostics",
}
_SUBPACKAGES = ("models", "samplers")

__all__ = [
    "Draws",
    "MinibatchData",
    "NumpyroModel",
    "Reference",
    "Result",
    "Target",
    "load",
    "log_likelihood",
    "models",
    "predictive",
    "prior_predictive",
    "resume",
    "sample",
    "samplers",
    "score",
    "set_compile_cache",
    "summary",
]

if TYPE_CHECKING:
    from bayeswb import models, samplers
    from bayeswb.core.diagnostics import score, summary
    from bayeswb.core.draws import Draws
    from bayeswb.core.model_data import log_likelihood, predictive, prior_predictive
    from bayeswb.core.result import Result, load
    from bayeswb.core.target import MinibatchData, NumpyroModel, Reference, Target
    from bayeswb.execution.compile_cache import set_compile_cache
    from bayeswb.execution.sample import resume, sample


_loading = False


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC and name not in _SUBPACKAGES:
        raise AttributeError(f"module 'bayeswb' has no attribute {name!r}")
    _load()
    if name in _SUBPACKAGES:  # (also asked for while _load is importing)
        value = importlib.import_module(f"bayeswb.{name}")
    else:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


def _load() -> None:
    """Import every public name into this module, once: the samplers and models register
    themselves on import, and the compilation cache is turned on."""
    global _loading
    if _loading or "sample" in globals():
        return
    _loading = True
    try:
        from bayeswb.execution import compile_cache

        compile_cache.enable_by_default()
        for subpackage in _SUBPACKAGES:
            globals()[subpackage] = importlib.import_module(f"bayeswb.{subpackage}")
        for name, module in _PUBLIC.items():
            globals()[name] = getattr(importlib.import_module(module), name)
    finally:
        _loading = False
