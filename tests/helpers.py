"""Statistical test helpers: bounds derived from a stated false-alarm rate, never tuned.

A correct sampler's ``(estimate - truth) / MCSE`` is close to standard normal; with K
such z-scores in one test we bound the largest by the two-sided normal quantile for a
family-wise false-alarm rate ``alpha`` (Bonferroni): ``z_bound(K)``.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

FALSE_ALARM_RATE = 1e-3


def z_bound(num_tests: int, alpha: float = FALSE_ALARM_RATE) -> float:
    """Two-sided Bonferroni bound: P(max |Z_k| > bound) <= alpha for K standard normals."""
    return float(norm.ppf(1.0 - alpha / (2.0 * num_tests)))


def assert_z_scores(z: np.ndarray, what: str, alpha: float = FALSE_ALARM_RATE) -> None:
    """Fail if any |z| exceeds the family-wise bound for ``z.size`` tests."""
    z = np.ravel(np.asarray(z, dtype=np.float64))
    assert np.all(np.isfinite(z)), f"{what}: non-finite z-scores {z}"
    bound = z_bound(z.size, alpha)
    worst = int(np.argmax(np.abs(z)))
    assert abs(z[worst]) < bound, (
        f"{what}: |z| = {abs(z[worst]):.2f} at index {worst} exceeds {bound:.2f} "
        f"(family-wise false-alarm rate {alpha}, {z.size} tests); all z = {np.round(z, 2)}"
    )


def moment_z_scores(result, name: str, mean: np.ndarray, sd: np.ndarray) -> dict:
    """z-scores of the posterior mean and of the second central moment of ``name``.

    Uses ArviZ's MCSE of the mean for ``x`` and for ``(x - mean)^2`` (the latter tests
    the variance: its expectation is ``sd^2``).
    """
    import arviz as az

    values = result.idata.posterior[name]
    squared = ((values - mean) ** 2).rename(name)
    estimate_mean = values.mean(("chain", "draw")).values
    estimate_var = squared.mean(("chain", "draw")).values
    mcse_mean = az.mcse(values.to_dataset(), method="mean")[name].values
    mcse_var = az.mcse(squared.to_dataset(), method="mean")[name].values
    return {
        "mean": (estimate_mean - mean) / mcse_mean,
        "var": (estimate_var - np.asarray(sd) ** 2) / mcse_var,
    }


def perturbed(tree, key, size):
    """``tree`` with every inexact array moved by ``size`` standard normals.

    flowjax initialises coupling and autoregressive layers to the identity; a log-determinant
    or path-weight check needs a non-trivial map.
    """
    import equinox as eqx
    import jax

    params, static = eqx.partition(tree, eqx.is_inexact_array)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    leaves = [
        leaf + size * jax.random.normal(k, leaf.shape, leaf.dtype)
        for leaf, k in zip(leaves, keys, strict=True)
    ]
    return eqx.combine(jax.tree.unflatten(treedef, leaves), static)
