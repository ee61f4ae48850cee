"""bayeswb: a Bayesian inference and sampling workbench.

Example:
    >>> import bayeswb as bw
    >>> t = bw.models.get("funnel", dim=10)
    >>> r = bw.sample(t, "nuts", seed=0, num_chains=2, num_samples=200, num_warmup=200)
    >>> sorted(bw.score(r, t))[:2]
    ['abs_mean_error_max', 'mean_z_max']
"""

from bayeswb.core.target import MinibatchData, NumpyroModel, Reference, Target  # isort: skip
from bayeswb import models, samplers  # isort: skip
from bayeswb.core.diagnostics import score, summary
from bayeswb.core.draws import Draws
from bayeswb.core.model_data import log_likelihood, predictive, prior_predictive
from bayeswb.core.result import Result, load
from bayeswb.execution import compile_cache
from bayeswb.execution.compile_cache import set_compile_cache
from bayeswb.execution.sample import resume, sample

__version__ = "0.1.0"

compile_cache.enable_by_default()

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
