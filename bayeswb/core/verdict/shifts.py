"""The checks of a variational fit's draws: k-hat of ``log p - log q``, and whether the
importance weights it implies move the draws' means or variances (the package
docstring, ``importance_shift`` and ``variance_shift``)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import arviz as az
import numpy as np
from scipy.stats import norm

from bayeswb.core.verdict.check import Check
from bayeswb.core.verdict.weights import k_hat_check, psis_k_hat


def variational_checks(
    idata: az.InferenceData, stats: Any, fit_from_draws: bool = False
) -> list[Check]:
    """k-hat of ``log p - log q`` at the draws, and where it allows importance weights,
    the shift of the means they imply (package docstring); ``fit_from_draws``: ``q`` was
    fitted to the draws themselves (consensus), so no run's shift is tested alone."""
    if "log_q" not in stats or "lp" not in stats:
        return []
    log_ratios = np.asarray(stats["lp"].values - stats["log_q"].values, dtype=np.float64)
    worst = max(psis_k_hat(run) for run in log_ratios)
    check = dataclasses.replace(
        k_hat_check(worst, log_ratios.shape[-1]),
        advice="an MCMC sampler, or importance sampling from this fit (flow_is, is): the "
        "approximation is not close to the target",
    )
    if not check.ok:
        return [check]
    positions = np.asarray(idata.unconstrained_posterior["position"].values, dtype=np.float64)
    each_run = not fit_from_draws
    return [
        check,
        importance_shift(log_ratios, positions, each_run=each_run),
        variance_shift(log_ratios, positions, each_run=each_run),
    ]


class _Shift(NamedTuple):
    """The weighted-minus-plain shift of a feature's mean (:func:`_weight_shift`)."""

    pooled: np.ndarray  # (d,) shift pooled over runs
    z: np.ndarray  # (d,) its z
    bound: float
    flagged: np.ndarray  # (d,)
    shifts: np.ndarray  # (runs, d) each run's shift
    run_z: np.ndarray  # (runs, d)
    run_bound: float
    run_flagged: np.ndarray  # (runs, d)


def _weight_shift(
    weights: np.ndarray, values: np.ndarray, each_run: bool, plain: np.ndarray | None = None
) -> _Shift:
    """Whether importance weights (runs, n; normalised in each run) move the mean of the
    unweighted ``values`` (runs, n, d) beyond chance and beyond the draws' own MCSE,
    pooled and (``each_run``) in each run alone; package docstring, ``importance_shift``.
    ``plain``: the feature whose plain mean the weighted mean of ``values`` is set
    against, where the two differ (a variance: squares about the weighted and about the
    plain mean); None: ``values``."""
    runs, n, dim = values.shape
    weighted_mean = np.einsum("rn,rnd->rd", weights, values)
    shifts = weighted_mean - (values if plain is None else plain).mean(axis=1)
    # delta method: the shift is sum_i (w_i - 1/n) (x_i - mu) in each run
    centred = values - weighted_mean[:, None]
    variance = np.einsum("rn,rnd->rd", (weights - 1.0 / n) ** 2, centred**2)
    sd = values.reshape(-1, dim).std(axis=0)
    pooled = np.mean(shifts, axis=0)
    # equal weights (variance 0) leave any feature in place but for rounding
    z = _ratio(np.abs(pooled), np.sqrt(variance.sum(axis=0)) / runs)
    bound = float(norm.ppf(1.0 - 0.01 / (2 * dim)))
    flagged = (z > bound) & (np.abs(pooled) > bound * _mean_error(values, weighted_mean, sd))
    run_z = _ratio(np.abs(shifts), np.sqrt(variance))
    run_bound = float(norm.ppf(1.0 - 0.01 / (2 * dim * runs)))
    run_flagged = (run_z > run_bound) & each_run
    if run_flagged.any():
        run_flagged &= np.abs(shifts) > run_bound * _run_mcse(values)
    return _Shift(pooled, z, bound, flagged, shifts, run_z, run_bound, run_flagged)


def _run_weights(log_ratios: np.ndarray) -> np.ndarray:
    """``exp(log_ratios)`` (runs, n) normalised within each run."""
    weights = np.exp(log_ratios - log_ratios.max(axis=1, keepdims=True))
    return weights / weights.sum(axis=1, keepdims=True)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator``, 0 where the denominator is 0."""
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, numerator / safe, 0.0)


IMPORTANCE_ADVICE = (
    "importance sampling from this fit (is, flow_is), or a sampler that corrects itself "
    "(fusion, smc, an MCMC sampler)"
)


def _shift_check(name: str, shift: _Shift, scale: np.ndarray, what: str, unit: str) -> Check:
    """The check of a :class:`_Shift` of ``what`` (a moment's name), shifts shown in
    units of ``scale`` (``unit``)."""
    scale = np.where(scale > 0, scale, 1.0)
    if shift.flagged.any():
        worst = int(np.argmax(np.where(shift.flagged, np.abs(shift.pooled) / scale, -1.0)))
        message = (
            f"importance weights move the {what} of coordinate {worst} by "
            f"{abs(shift.pooled[worst]) / scale[worst]:.2f} {unit} "
            f"(z {shift.z[worst]:.1f} > {shift.bound:.1f}): the draws' {what}s are biased"
        )
        return Check(name, float(shift.z[worst]), shift.bound, False, message, IMPORTANCE_ADVICE)
    if shift.run_flagged.any():
        relative = np.where(shift.run_flagged, np.abs(shift.shifts) / scale, -1.0)
        run, coordinate = np.unravel_index(np.argmax(relative), relative.shape)
        message = (
            f"importance weights move run {run}'s {what} of coordinate {coordinate} by "
            f"{abs(shift.shifts[run, coordinate]) / scale[coordinate]:.2f} {unit} "
            f"(z {shift.run_z[run, coordinate]:.1f} > {shift.run_bound:.1f}): each run's "
            "fit is biased its own way"
        )
        value = float(shift.run_z[run, coordinate])
        return Check(name, value, shift.run_bound, False, message, IMPORTANCE_ADVICE)
    worst = int(np.argmax(shift.z))
    message = f"importance weights leave the {what}s in place (z {shift.z[worst]:.1f})"
    return Check(name, float(shift.z[worst]), shift.bound, True, message, IMPORTANCE_ADVICE)


def importance_shift(
    log_ratios: np.ndarray, positions: np.ndarray, each_run: bool = True
) -> Check:
    """Whether importance weights ``exp(log_ratios)`` (runs, n) move the mean of the
    unweighted ``positions`` (runs, n, d) by more than chance and more than the draws'
    own MCSE: pooled over runs (a bias the runs share), or, if ``each_run``, in one run
    (fits that each miss in their own direction, which pooling would average away);
    package docstring, ``importance_shift``. Shifts are shown in sds of the draws."""
    shift = _weight_shift(_run_weights(log_ratios), positions, each_run)
    sd = positions.reshape(-1, positions.shape[-1]).std(axis=0)
    return _shift_check("importance_shift", shift, sd, "mean", "sd")


def variance_shift(log_ratios: np.ndarray, positions: np.ndarray, each_run: bool = True) -> Check:
    """:func:`importance_shift` of the squared deviations, from each run's weighted mean
    (weighted) and from its plain mean (plain): whether the weights move the draws'
    variances (package docstring, ``variance_shift``).
    Shifts are shown as a share of the draws' variance."""
    weights = _run_weights(log_ratios)
    weighted_mean = np.einsum("rn,rnd->rd", weights, positions)
    squares = (positions - weighted_mean[:, None]) ** 2
    plain = (positions - positions.mean(axis=1, keepdims=True)) ** 2
    shift = _weight_shift(weights, squares, each_run, plain)
    variance = plain.reshape(-1, plain.shape[-1]).mean(axis=0)
    return _shift_check("variance_shift", shift, variance, "variance", "of it")


def _mean_error(positions: np.ndarray, weighted_mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """The Monte Carlo error of the pooled mean of ``positions`` (runs, n, d), per
    coordinate: the larger of ``sd / sqrt(ESS)`` (bulk ESS over the runs as chains) and,
    with two runs or more, the spread across runs of their shifts (``weighted_mean`` minus
    each run's own mean) over ``sqrt(runs)``, which also carries the error of a fit made
    from the draws themselves (consensus)."""
    runs = positions.shape[0]
    ess = az.ess(az.convert_to_dataset({"x": positions}), method="bulk")["x"].values
    error = sd / np.sqrt(np.maximum(ess, 1.0))
    if runs > 1:
        shifts = weighted_mean - positions.mean(axis=1)
        error = np.maximum(error, shifts.std(axis=0, ddof=1) / math.sqrt(runs))
    return error


def _run_mcse(positions: np.ndarray) -> np.ndarray:
    """Each run's own Monte Carlo error of its mean (runs, d): its sd over the square root
    of its bulk ESS as one chain."""
    # one chain of n draws whose variable has the run axis: ESS per run and coordinate
    per_run = az.convert_to_dataset({"x": np.moveaxis(positions, 1, 0)[None]})
    ess = az.ess(per_run, method="bulk")["x"].values
    return positions.std(axis=1) / np.sqrt(np.maximum(ess, 1.0))
