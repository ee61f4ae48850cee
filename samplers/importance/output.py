"""From log weights to a run's output: log Z, the reported weights, PSIS diagnostics.

Pareto-smoothed importance sampling (Vehtari, Simpson, Gelman, Yao and Gabry 2024, "Pareto
smoothed importance sampling", JMLR 25(72)): the shape ``k`` of a generalised Pareto fit to
the largest weights says whether the estimate can be trusted; ``k < 0.7`` is the usual
reading of "reliable" (their section 3). The fit is ArviZ's ``psislw``, which runs in numpy;
:func:`pareto_smooth` calls it through ``jax.pure_callback``, so every ``run`` stays one
jitted program (``bw.sample`` compiles the whole run) and ``k`` lands in the Result.

Log weights stay logs throughout: a NaN or ``-inf`` log density (or proposal density) is a
weight of zero, and a run whose weights are all zero reports ``log Z = -inf``, never NaN.
Every weighted sampler (``is``, ``amis``, ``vis``, the flows) ends with
:func:`weighted_output`.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import jax
import numpy as np

from bayeswb.core.weights import kish_ess, log_mean_exp, safe_log_weights

Array = jax.Array

RELIABLE_PARETO_K = 0.7
# the fewest weights ArviZ's PSIS fits a tail to (it needs a few in the tail)
MIN_PSIS_WEIGHTS = 5


def _psislw_host(log_weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ArviZ's PSIS on the host; rows with no finite weight, and weights too few to fit a
    tail to, are returned unchanged with k-hat inf (nothing can be said of them)."""
    import arviz as az

    log_weights = np.asarray(log_weights)
    dtype = log_weights.dtype
    values = np.asarray(log_weights, dtype=np.float64)
    if values.shape[-1] < MIN_PSIS_WEIGHTS:
        return log_weights, np.full(values.shape[:-1], np.inf, dtype)
    with warnings.catch_warnings():
        # the k-hat is returned as a number (and read against 0.7 by the caller);
        # ArviZ's warning about large k would only repeat it
        warnings.simplefilter("ignore")
        smoothed, k = az.psislw(values, normalize=False)
    smoothed = np.asarray(smoothed)
    k = np.asarray(k, dtype=np.float64)
    empty = ~np.any(np.isfinite(values), axis=-1)
    smoothed = np.where(empty[..., None], values, smoothed)
    smoothed = np.where(np.isnan(smoothed), -np.inf, smoothed)
    k = np.where(empty, np.inf, k)
    return smoothed.astype(dtype), k.astype(dtype)


def pareto_smooth(log_weights: Array) -> tuple[Array, Array]:
    """PSIS of log weights along the last axis: ``(smoothed log weights, k-hat)``.

    Wraps ``arviz.psislw`` (Vehtari et al. 2024, algorithm 1) with ``normalize=False``,
    so the smoothed weights keep the raw weights' scale; it runs on the host through
    ``jax.pure_callback`` and so may sit inside jitted and vmapped code. Shapes:
    ``(..., n) -> ((..., n), (...))``. ``k < 0.7`` reads as reliable; a row whose weights
    are all zero gets ``k = inf``.

    Example:
        >>> import jax.numpy as jnp
        >>> lw = jax.random.normal(jax.random.key(0), (2, 400))
        >>> smoothed, k = jax.jit(pareto_smooth)(lw)
        >>> smoothed.shape, bool(jnp.all(k < 0.7))
        ((2, 400), True)
    """
    shapes = (
        jax.ShapeDtypeStruct(log_weights.shape, log_weights.dtype),
        jax.ShapeDtypeStruct(log_weights.shape[:-1], log_weights.dtype),
    )
    return jax.pure_callback(_psislw_host, shapes, log_weights, vmap_method="broadcast_all")


class WeightedOutput(NamedTuple):
    """A weighted run's output (each entry per run, ``runs`` first): ``log_z`` (runs,),
    the ``log_weights`` to report (runs, n), ``diagnostics`` (``pareto_k`` and ``ess``,
    each (runs, 1), for ``Draws.path_stats``) and ``relative_variance`` (runs,), each
    run's own estimate of ``Var(Z_hat) / Z**2`` (``Draws.log_z_relative_variance``)."""

    log_z: Array
    log_weights: Array
    diagnostics: dict[str, Array]
    relative_variance: Array


def weighted_output(log_weights: Array, psis: bool) -> WeightedOutput:
    """Per-run log Z, the log weights to report, the per-run diagnostics and variance.

    ``log_weights`` is (runs, n). ``log Z`` is always the raw, unbiased estimate
    ``log mean w`` per run; with ``psis`` the reported log weights are the smoothed ones
    (lower-variance, slightly biased moments, Vehtari et al. 2024 section 4). The
    relative variance of ``Z_hat = mean w`` over n independent draws is estimated by the
    weights' sample variance over ``n mean(w)**2``, which is ``(n / ESS - 1) / (n - 1)``
    with Kish's ESS (Owen 2013, "Monte Carlo theory, methods and examples", eq. 9.3):
    finite only where the weights have a variance, which PSIS's k-hat < 0.7 vouches for.

    Example:
        >>> import jax.numpy as jnp
        >>> lw = jnp.log(jnp.array([[1.0, 3.0], [2.0, 2.0]]))
        >>> out = weighted_output(lw, psis=False)
        >>> [round(float(z), 4) for z in jnp.exp(out.log_z)], out.diagnostics["ess"].shape
        ([2.0, 2.0], (2, 1))
        >>> [round(float(v), 4) for v in out.relative_variance]  # var 2 / (2 * 2**2)
        [0.25, 0.0]
    """
    log_weights = safe_log_weights(log_weights)
    log_z = log_mean_exp(log_weights)
    smoothed, pareto_k = pareto_smooth(log_weights)
    ess = kish_ess(log_weights)
    n = log_weights.shape[-1]
    relative_variance = (n / ess - 1.0) / max(n - 1, 1)
    diagnostics = {"pareto_k": pareto_k[:, None], "ess": ess[:, None]}
    return WeightedOutput(log_z, smoothed if psis else log_weights, diagnostics, relative_variance)
