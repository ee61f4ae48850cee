"""Equal-weight draws from weighted particles, so that ArviZ reads weighted runs right.

ArviZ treats every draw of the ``posterior`` group as one equally weighted draw. A weighted
run (is, smc, the flows, ...) therefore keeps its particles in ``weighted_posterior``
(beside ``sample_stats.log_weight``) and puts in ``posterior`` the same number of draws
resampled from them, run by run (chain by chain), by stratified resampling (Kitagawa 1996;
Douc, Cappe and Moulines 2005, section 3): draw ``j`` of a run of ``n`` is the particle
where the run's normalised weights' cumulative sum first exceeds ``(j + u_j) / n``, with
``u_j`` independent uniforms. Conditional on the particles, an average over the resampled
draws is unbiased for the weighted average, and its variance is at most multinomial
resampling's ``Var_w(x) / n`` (Douc et al., their equation (8)). Each particle appears
within 2 of ``n w_i`` times, in its own order, so duplicates sit next to each other and
ArviZ's autocorrelation-based ESS sees them.

ArviZ's mean over ``posterior`` is therefore the average of the runs' self-normalised
estimates, while ``bw.summary`` weighs every particle of every run by its weight; both are
consistent, and they differ by more than resampling noise when the runs' weights are
uneven.

The uniforms come from numpy's default generator seeded with a CRC32 of the log weights:
the same run always gives the same draws. A run whose weights are all zero (or not
finite: the verdict's ``finite`` check names it) has no equal-weight draws; its row is NaN.
"""

from __future__ import annotations

import zlib

import numpy as np
import xarray as xr
from scipy.special import logsumexp


def stratified_indices(log_weights: np.ndarray) -> np.ndarray:
    """For log weights of shape (runs, n), the (runs, n) indices of the particles kept by
    stratified resampling within each run; -1 for every draw of a run with no usable weight.

    Example:
        >>> stratified_indices(np.array([[np.log(2.0), 0.0, 0.0, -np.inf]])).tolist()
        [[0, 0, 1, 2]]
    """
    log_weights = np.where(np.isnan(log_weights), -np.inf, log_weights).astype(np.float64)
    runs, n = log_weights.shape
    top = np.max(log_weights, axis=1, keepdims=True)
    usable = np.isfinite(top) & ~np.any(log_weights == np.inf, axis=1, keepdims=True)
    # a run without usable weights gets uniform ones here, so the arithmetic stays finite;
    # its indices are replaced by -1 below
    safe = np.where(usable, log_weights, 0.0)
    weights = np.exp(safe - logsumexp(safe, axis=1, keepdims=True))
    cumulative = np.cumsum(weights, axis=1)
    cumulative[:, -1] = 1.0  # rounding must not leave the last particle out of reach
    rng = np.random.default_rng(zlib.crc32(np.ascontiguousarray(log_weights).tobytes()))
    points = (rng.uniform(size=(runs, n)) + np.arange(n)) / n
    # one sorted search over all runs: run r's values are shifted into [r, r + 1]
    offset = np.arange(runs)[:, None]
    flat = np.searchsorted((cumulative + offset).ravel(), (points + offset).ravel(), "right")
    index = np.minimum(flat.reshape(runs, n) - offset * n, n - 1)
    return np.where(usable, index, -1)


def equal_weight_posterior(weighted: xr.Dataset, log_weights: np.ndarray) -> xr.Dataset:
    """``weighted`` (variables with leading chain, draw dims) resampled to equal weights
    with :func:`stratified_indices`; variables of a run with no usable weight are NaN.

    Example:
        >>> particles = xr.Dataset({"x": (("chain", "draw"), [[1.0, 2.0, 3.0]])})
        >>> log_weights = np.array([[-np.inf, 0.0, np.log(2.0)]])
        >>> equal_weight_posterior(particles, log_weights)["x"].values.tolist()
        [[2.0, 3.0, 3.0]]
    """
    index = stratified_indices(np.asarray(log_weights))
    missing = index < 0

    def take(values: np.ndarray) -> np.ndarray:
        spread = np.maximum(index, 0).reshape(index.shape + (1,) * (values.ndim - 2))
        taken = np.take_along_axis(values, spread, axis=1)
        if missing.any():
            taken = taken.astype(np.result_type(taken.dtype, np.float32))
            taken[missing] = np.nan
        return taken

    return weighted.copy(data={name: take(var.values) for name, var in weighted.data_vars.items()})
