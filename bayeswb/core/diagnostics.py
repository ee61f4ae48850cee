"""Diagnostics against ground truth (``score``) and ArviZ summaries (``summary``).

Weighted output stays weighted: moments use the normalised importance weights, and their
Monte Carlo standard errors the delta-method variance of the self-normalised estimate,
summed over the particle families an SMC run records
(:func:`bayeswb.core.verdict.weighted_mean_variance`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from bayeswb.core.identity import check_same_target, stored_identity
from bayeswb.core.result import Result
from bayeswb.core.target import Target
from bayeswb.core.verdict import (
    families,
    normalised_weights,
    weighted_mean_variance,
    weights_ess,
)


def pareto_k(result: Result) -> float | None:
    """The largest PSIS Pareto k-hat over the runs, where the sampler reported one.

    Importance samplers store k-hat per run in ``path_stats.pareto_k`` (Vehtari et al.
    2024: below 0.7 the weights' estimates are reliable). None when no k-hat was reported
    (MCMC, or particle methods whose resampled weights k-hat would not describe).
    """
    path = getattr(result.idata, "path_stats", None)
    if path is None or "pareto_k" not in path:
        return None
    return float(np.max(path["pareto_k"].values))


def _moments(result: Result, name: str) -> dict[str, np.ndarray]:
    """Mean, sd and their Monte Carlo standard errors of one posterior variable (of a
    weighted run: from its weighted particles, not their resampled draws)."""
    log_weights = result.log_weights
    if log_weights is not None:
        values = result.idata.weighted_posterior[name]
        w = normalised_weights(log_weights)
        flat = values.values.reshape(w.size, -1).astype(np.float64)
        mean = w @ flat
        variance = w @ (flat - mean) ** 2
        sd = np.sqrt(variance)
        family = families(result.idata)
        # delta-method MCSEs; the variance's, then sd's = var's / (2 sd)
        var_mean = weighted_mean_variance(flat, w, family)
        var_variance = weighted_mean_variance((flat - mean) ** 2, w, family)
        shape = values.shape[2:]
        with np.errstate(divide="ignore", invalid="ignore"):
            mcse_sd = np.sqrt(var_variance) / (2.0 * sd)
        return {
            "mean": mean.reshape(shape),
            "sd": sd.reshape(shape),
            "mcse_mean": np.sqrt(var_mean).reshape(shape),
            "mcse_sd": mcse_sd.reshape(shape),
        }
    values = result.idata.posterior[name]
    dataset = values.to_dataset()
    return {
        "mean": values.mean(("chain", "draw")).values,
        "sd": values.std(("chain", "draw"), ddof=1).values,
        "mcse_mean": az.mcse(dataset, method="mean")[name].values,
        "mcse_sd": az.mcse(dataset, method="sd")[name].values,
    }


def _equal_weight_positions(result: Result, n: int, key: jax.Array) -> np.ndarray:
    positions = result.positions.reshape(-1, result.positions.shape[-1])
    log_weights = result.log_weights
    if log_weights is not None:
        w = normalised_weights(log_weights)
        index = jax.random.choice(key, w.size, (n,), p=jnp.asarray(w))
        return positions[np.asarray(index)]
    # evenly spaced thinning keeps every chain represented
    evenly = np.linspace(0, positions.shape[0] - 1, n).round().astype(int)
    return positions[evenly]


def _exact_samples(
    sample_exact: Callable[[jax.Array, int], jax.Array], key: jax.Array, count: int, n: int
) -> list[np.ndarray]:
    """``count`` samples ``sample_exact(k, n)``, one per key ``k`` of ``split(key, count)``:
    one compiled program where the sampler traces (op by op, a funnel's exact draws were
    about ten small programs, compiled anew in every process), else called as it is."""

    try:
        return list(np.asarray(_exact_program(sample_exact, count, n)(key)))
    except TypeError:  # a sampler that does not trace (numpy inside): jax's errors are TypeErrors
        return [np.asarray(sample_exact(k, n)) for k in jax.random.split(key, count)]


@functools.lru_cache(maxsize=32)
def _exact_program(
    sample_exact: Callable[[jax.Array, int], jax.Array], count: int, n: int
) -> Callable[[jax.Array], jax.Array]:
    """The jitted program of :func:`_exact_samples`, kept per sampler and size, so that
    scoring runs of one target again in a process does not trace it again."""

    def samples(key: jax.Array) -> jax.Array:
        return jax.vmap(sample_exact, (0, None))(jax.random.split(key, count), n)

    return jax.jit(samples)


def sliced_wasserstein(
    x: np.ndarray, y: np.ndarray, key: jax.Array, num_projections: int = 128
) -> float:
    """Sliced 1-Wasserstein distance between two equal-size samples of shape (n, dim).

    Averages over random unit directions the exact 1-D W1 between projections (mean
    absolute difference of sorted projections).

    Example:
        >>> x = np.zeros((4, 2)); y = np.ones((4, 2))
        >>> 0.5 < sliced_wasserstein(x, y, jax.random.key(0)) < 1.5
        True
    """
    return float(_sliced_w1(np.asarray(x), np.asarray(y), key, num_projections))


@functools.partial(jax.jit, static_argnums=3)
def _sliced_w1(x: jax.Array, y: jax.Array, key: jax.Array, num_projections: int) -> jax.Array:
    # one program (op by op it was about ten small ones, compiled anew in every process)
    directions = jax.random.normal(key, (num_projections, x.shape[1]), x.dtype)
    directions = directions / jnp.linalg.norm(directions, axis=1, keepdims=True)
    px = jnp.sort(x @ directions.T, axis=0)
    py = jnp.sort(y @ directions.T, axis=0)
    return jnp.mean(jnp.abs(px - py))


def score(result: Result, target: Target, seed: int = 0, max_points: int = 4000) -> dict:
    """Distances from a run to the target's ground truth, for whatever truth it carries.

    Keys (each present only when it applies):

    - ``log_z_error``, ``abs_delta_log_z`` and ``log_z_error_in_se``: against ``target.log_z``
      (the standard error is the run's and, where ``log_z`` is an estimate, its own,
      ``target.metadata["log_z_se"]``, added in quadrature)
    - ``mean_z_max``, ``mean_z_rms``: |posterior mean - reference mean| / MCSE over all
      reference parameters (for a correct sampler roughly standard normal); the MCSE is
      the run's and the reference's own (``Reference.mcse_mean``) added in quadrature
    - ``abs_mean_error_max``: the largest |mean error| in units of the reference sd
    - ``sd_rel_error_max``: the largest |sd / reference sd - 1|; ``sd_z_max`` in MCSE units
    - ``pareto_k``: the largest PSIS k-hat over runs, for samplers that report one
    - ``sliced_wasserstein``: to exact samples (same count), with
      ``sliced_wasserstein_exact`` the same distance between two exact samples (the noise
      floor for that sample size)
    - ``verdict``: what the run said of itself without the truth (``Result.diagnostics``):
      ``"fine"`` or ``"unreliable: "`` and the failed checks' names; a bad score with a
      ``"fine"`` verdict is a silent failure

    A result made on another target (another name, parameters or density: see
    :mod:`bayeswb.core.identity`) is refused with a ValueError.

    Example:
        >>> import bayeswb as bw
        >>> t = bw.models.get("gaussian")
        >>> r = bw.sample(t, "nuts", num_chains=4, num_samples=500, num_warmup=500)
        >>> s = bw.score(r, t)
        >>> s["mean_z_max"] < 5
        True
    """
    stored = stored_identity(result.idata)
    if stored is not None:
        check_same_target(stored, target, "result")
    out: dict[str, float | str] = {}
    k_hat = pareto_k(result)
    if k_hat is not None:
        out["pareto_k"] = k_hat
    if target.log_z is not None and result.log_z is not None:
        error = result.log_z - target.log_z
        out["log_z_error"] = error
        out["abs_delta_log_z"] = abs(error)
        # where the truth's log Z is itself an estimate, its standard error counts too
        se = float(np.hypot(result.log_z_se or 0.0, target.metadata.get("log_z_se", 0.0)))
        if se:
            out["log_z_error_in_se"] = error / se
    if target.reference is not None:
        z_mean, z_sd, mean_error, sd_error = [], [], [], []
        for name, ref_mean in target.reference.mean.items():
            if name not in result.idata.posterior:
                continue
            m = _moments(result, name)
            ref_sd = np.asarray(target.reference.sd[name])
            ref_mcse = (target.reference.mcse_mean or {}).get(name, 0.0)
            mcse = np.hypot(m["mcse_mean"], ref_mcse)
            z_mean.append(np.ravel((m["mean"] - ref_mean) / mcse))
            z_sd.append(np.ravel((m["sd"] - ref_sd) / m["mcse_sd"]))
            mean_error.append(np.ravel(np.abs(m["mean"] - ref_mean) / ref_sd))
            sd_error.append(np.ravel(np.abs(m["sd"] / ref_sd - 1.0)))
        if z_mean:
            z = np.concatenate(z_mean)
            out["mean_z_max"] = float(np.max(np.abs(z)))
            out["mean_z_rms"] = float(np.sqrt(np.mean(z**2)))
            out["abs_mean_error_max"] = float(np.max(np.concatenate(mean_error)))
            out["sd_z_max"] = float(np.max(np.abs(np.concatenate(z_sd))))
            out["sd_rel_error_max"] = float(np.max(np.concatenate(sd_error)))
    if target.sample_exact is not None:
        # keys by fold_in, whose program the run itself has compiled (split would add two)
        base = jax.random.key(seed)
        key_draws, key_exact, key_proj = (jax.random.fold_in(base, i) for i in range(3))
        n = min(max_points, result.positions.shape[0] * result.positions.shape[1])
        draws = _equal_weight_positions(result, n, key_draws)
        exact, exact2 = _exact_samples(target.sample_exact, key_exact, 2, n)
        out["sliced_wasserstein"] = sliced_wasserstein(draws, exact, key_proj)
        out["sliced_wasserstein_exact"] = sliced_wasserstein(exact2, exact, key_proj)
    out["verdict"] = verdict_label(result)
    return out


def verdict_label(result: Result) -> str:
    """``"fine"``, or ``"unreliable: "`` and the names of the checks the run failed.

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample("gaussian", "nuts", num_chains=4, num_samples=500, num_warmup=500)
        >>> verdict_label(r)
        'fine'
    """
    verdict = result.diagnostics
    if verdict.ok:
        return "fine"
    return "unreliable: " + ", ".join(check.name for check in verdict.failed)


def summary(result: Result, **kwargs) -> pd.DataFrame:
    """ArviZ's summary of the posterior, with log Z, cost, the one-line ``verdict``
    (``str(result.diagnostics)``) and (where reported) the PSIS k-hat ``pareto_k`` in
    ``DataFrame.attrs``.

    Keyword arguments go to ``az.summary``. Weighted runs get the weighted means and sds of
    their particles, the MCSEs and the weights' ESS instead, and refuse keywords; for
    ArviZ's summary of their equal-weight (resampled) draws, with its options, call
    ``az.summary(result.idata, ...)``.

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample("gaussian", "nuts", num_chains=4, num_samples=500, num_warmup=500)
        >>> df = bw.summary(r)
        >>> "ess_bulk" in df.columns, "n_grad_evals" in df.attrs
        (True, True)
    """
    log_weights = result.log_weights
    if log_weights is not None:
        if kwargs:
            raise TypeError(
                f"bw.summary of a weighted run takes no options (got {', '.join(kwargs)}); "
                "az.summary(result.idata, ...) summarises its equal-weight draws with them"
            )
        rows = {}
        ess = weights_ess(log_weights)
        for name in result.idata.posterior.data_vars:
            m = _moments(result, name)
            for index in np.ndindex(np.shape(m["mean"])):
                label = f"{name}[{', '.join(map(str, index))}]" if index else name
                rows[label] = {k: float(np.asarray(v)[index]) for k, v in m.items()}
                rows[label]["ess_weights"] = ess
        frame = pd.DataFrame.from_dict(rows, orient="index")
    else:
        frame = az.summary(result.idata, **kwargs)
    frame.attrs.update({"log_z": result.log_z, "log_z_se": result.log_z_se, **result.cost})
    frame.attrs["verdict"] = str(result.diagnostics)
    k_hat = pareto_k(result)
    if k_hat is not None:
        frame.attrs["pareto_k"] = k_hat
    return frame
