"""The weights' arithmetic (normalised weights, Kish ESS, the genealogy variance of a
weighted mean, PSIS k-hat) and the checks of weighted runs: the weights' ESS, k-hat,
the SMC path, log Z's spread over runs and the runs' agreement (the package
docstring)."""

from __future__ import annotations

import math
from typing import Any

import arviz as az
import numpy as np
from scipy.special import logsumexp
from scipy.stats import chi2

from bayeswb.core.log_evidence import combine_log_z
from bayeswb.core.verdict.check import Check, ess_threshold, group, whole


def normalised_weights(log_weights: np.ndarray) -> np.ndarray:
    """Self-normalised weights over all chains and draws; NaN log weights count as zero.

    Example:
        >>> np.round(normalised_weights(np.log(np.array([1.0, 3.0]))), 12).tolist()
        [0.25, 0.75]
    """
    flat = np.where(np.isnan(log_weights), -np.inf, log_weights).ravel().astype(np.float64)
    return np.exp(flat - logsumexp(flat))


def weights_ess(log_weights: np.ndarray) -> float:
    """Kish effective sample size ``1 / sum(w_i^2)`` of normalised weights; 0 when the
    weights are not finite (NaN or +inf log weights: the ``finite`` check names them).

    Example:
        >>> round(weights_ess(np.zeros(8)), 12)
        8.0
    """
    w = normalised_weights(log_weights)
    ess = float(1.0 / np.sum(w**2))
    return ess if math.isfinite(ess) else 0.0


def weighted_mean_variance(
    values: np.ndarray, weights: np.ndarray, family: np.ndarray | None = None
) -> np.ndarray:
    """Variance of the self-normalised estimate ``sum_i w_i x_i`` per column of ``values``
    (n, d), for normalised ``weights`` (n,): ``sum_e (sum_{i in e} w_i (x_i - mean))^2``
    over the families e of ``family`` (n,) ints.

    Particles of one family descend from one initial draw through the resamplings of an
    SMC run and are correlated; this is the genealogy estimator of Chan and Lai (2013,
    "A general theory of particle filters in hidden Markov models and some
    applications", Ann. Statist., eq. 2.8) and Lee and Whiteley (2018, "Variance
    estimation in the particle filter", Biometrika, section 3), consistent for adaptive
    SMC (Du and Guyader 2021). Without ``family`` every draw is its own family and this is
    the delta-method variance of self-normalised importance sampling (Owen 2013, "Monte
    Carlo theory, methods and examples", eq. 9.8). It underestimates when few families
    survive (``len(unique(family))`` small): the runs_agree check then fires.

    Example:
        >>> x, w = np.array([[0.0], [2.0]]), np.array([0.5, 0.5])
        >>> weighted_mean_variance(x, w).tolist(), weighted_mean_variance(x, w, np.zeros(2, int))
        ([0.5], array([0.]))
    """
    values = np.asarray(values, dtype=np.float64).reshape(weights.shape[0], -1)
    centred = weights[:, None] * (values - weights @ values)
    if family is None:
        return np.sum(centred**2, axis=0)
    _, labels = np.unique(np.asarray(family).ravel(), return_inverse=True)
    per_family = np.zeros((labels.max(initial=-1) + 1, values.shape[1]))
    np.add.at(per_family, labels, centred)
    return np.sum(per_family**2, axis=0)


def families(idata: az.InferenceData) -> np.ndarray | None:
    """Every draw's family label, unique across runs, from ``sample_stats.family`` (the
    SMC samplers record it; see :func:`weighted_mean_variance`), flattened as the draws
    are; None where the run recorded none (each draw is then its own family).

    Example:
        >>> import xarray as xr
        >>> stats = xr.Dataset({"family": (("chain", "draw"), [[0, 0, 1], [0, 1, 1]])})
        >>> families(az.InferenceData(sample_stats=stats)).tolist()
        [0, 0, 1, 3, 4, 4]
    """
    stats = group(idata, "sample_stats")
    if stats is None or "family" not in stats:
        return None
    family = np.asarray(stats["family"].values, dtype=np.int64)
    runs, draws = family.shape[0], family.shape[1]
    return (family + draws * np.arange(runs)[:, None]).ravel()


def psis_k_hat(log_ratios: np.ndarray) -> float:
    """PSIS Pareto k-hat of one set of log importance ratios (ArviZ's ``psislw``).

    Example:
        >>> bool(psis_k_hat(np.random.default_rng(0).normal(size=2000) * 0.1) < 0.5)
        True
    """
    finite = np.asarray(log_ratios, dtype=np.float64).ravel()
    finite = finite[np.isfinite(finite)]
    if finite.size < 5:
        return math.inf
    _, k_hat = az.psislw(finite - finite.max())
    return float(k_hat)


def k_hat_threshold(draws_per_run: int) -> float:
    """Vehtari et al. (2024), section 3.2.4: ``min(1 - 1/log10(S), 0.7)``."""
    if draws_per_run <= 10:
        return 0.0
    return min(1.0 - 1.0 / math.log10(draws_per_run), 0.7)


def weight_checks(
    idata: az.InferenceData, log_weights: np.ndarray, log_z_per_run: np.ndarray | None
) -> list[Check]:
    runs, per_run = log_weights.shape[0], log_weights.shape[-1]
    need = ess_threshold(runs)
    ess = weights_ess(log_weights)
    checks = [
        Check(
            "weights_ess",
            ess,
            need,
            bool(ess >= need),
            f"weights' ess {whole(ess)}"
            + ("" if ess >= need else f" < {need:.0f}")
            + (" (collapsed)" if ess < 0.01 * log_weights.size else ""),
            "more particles (num_samples), or a proposal closer to the target",
        )
    ]
    own = group(idata, "sample_stats").get("log_z_relative_variance")
    own_variance = None if own is None else own.values
    path = group(idata, "path_stats")
    if path is not None and "pareto_k" in path:
        checks.append(k_hat_check(float(np.nanmax(path["pareto_k"].values)), per_run))
    if path is not None and "temperature" in path:
        checks.append(_smc_path(path, per_run))
    if path is not None and "lowest_path_ess" in path:
        checks.append(_resampled_paths(path, per_run))
    if path is not None and "killed" in path and np.nansum(path["killed"].values) > 0:
        log_z_se = combine_log_z(log_z_per_run, own_variance)[1]
        checks.append(_support(path["killed"].values, log_z_se or 0.0))
    if path is not None and "fusion_negative_weight" in path:
        checks.append(_bridge_estimates(path, ess))
    if path is not None and "acceptance_rate" in path:
        mean = float(np.nanmean(path["acceptance_rate"].values))
        checks.append(
            Check(
                "move_acceptance",
                mean,
                0.05,
                bool(mean >= 0.05),
                f"move acceptance {mean:.2f}" + ("" if mean >= 0.05 else " < 0.05"),
                "a smaller step size or another MCMC move: the particles do not move",
            )
        )
    if log_z_per_run is not None:
        checks += _log_z_spread(log_z_per_run, own_variance)
    positions = group(idata, "unconstrained_posterior")
    if positions is not None and runs >= 2:
        family = families(idata)
        checks.append(_runs_agree(positions["position"].values, log_weights, family))
    return checks


# the share of weight an mc_fusion run may drop (negative estimates set to zero), over
# 1 / sqrt(ESS): the bias that dropping it may cause, in Monte Carlo errors per sd of
# distance between the dropped draws and the mean
NEGATIVE_WEIGHT_SHARE = 0.25


def _bridge_estimates(path: Any, ess: float) -> Check:
    # the worst fusion of each run (a tree has several), averaged over the runs
    lost = float(np.nanmean(np.nanmax(path["fusion_negative_weight"].values, axis=-1)))
    truncated = int(np.nansum(path["fusion_truncated"].values))
    bound = NEGATIVE_WEIGHT_SHARE / math.sqrt(max(ess, 1.0))
    ok = bool(lost <= bound and truncated == 0)
    message = f"{100 * lost:.2g}% of the weight lost to negative bridge estimates"
    message += "" if lost <= bound else f" (> {100 * bound:.2g}%)"
    message += f"; {truncated} Poisson counts truncated" if truncated else ""
    return Check(
        "bridge_estimates",
        lost,
        bound,
        ok,
        message,
        "more bridge points (max_poisson_points), or a shorter fusion_time",
    )


def _runs_agree(
    positions: np.ndarray, log_weights: np.ndarray, family: np.ndarray | None
) -> Check:
    """Independent runs' weighted means against their own standard errors.

    For each coordinate, the variance of the runs' weighted means over the mean of their
    squared MCSEs (:func:`weighted_mean_variance`, by families where the run recorded
    them) is about chi^2_{R-1} / (R-1) for R runs whose errors are what they report; it
    fails above twice that distribution's ``1 - 0.01 / dim`` quantile (see the module
    docstring for the factor), as when the runs land in different regions, or their
    particles are far more correlated than they report.
    """
    runs, draws, dim = positions.shape
    means, squared_se = np.empty((runs, dim)), np.empty((runs, dim))
    for run in range(runs):
        w = normalised_weights(log_weights[run])
        x = positions[run].astype(np.float64)
        means[run] = w @ x
        run_family = None if family is None else family[run * draws : (run + 1) * draws]
        squared_se[run] = weighted_mean_variance(x, w, run_family)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.var(means, axis=0, ddof=1) / np.mean(squared_se, axis=0)
    ratio = np.where(np.isnan(ratio), np.inf, ratio)
    worst = float(np.max(ratio))
    bound = 2.0 * float(chi2.ppf(1.0 - 0.01 / dim, runs - 1) / (runs - 1))
    ok = bool(worst <= bound)
    return Check(
        "runs_agree",
        worst,
        bound,
        ok,
        f"runs' means within their SEs (ratio {worst:.1f})"
        if ok
        else f"runs' means disagree ({worst:.1f} x the variance they report, "
        f"> {bound:.1f}): the reported MCSEs are too small",
        "more MCMC moves per step or more particles (particles that share ancestors are "
        "fewer than the weights' ESS says), or a wider reference/proposal (every run may "
        "miss the same region)",
    )


def k_hat_check(k_hat: float, draws_per_run: int) -> Check:
    bound = k_hat_threshold(draws_per_run)
    ok = bool(k_hat < bound)
    return Check(
        "pareto_k",
        k_hat,
        bound,
        ok,
        f"k-hat {k_hat:.2f}" + ("" if ok else f" >= {bound:.2f}"),
        "a proposal closer to the target (longer training, a wider or heavier-tailed "
        "proposal); the estimates are dominated by a few draws",
    )


# the lowest ESS, as a fraction of the particles, that a resampled path may reach
# between two resamplings (smc_path, path_ess)
LOWEST_PATH_ESS = 0.01


def _smc_path(path: Any, particles: int) -> Check:
    final = float(np.nanmin(np.nanmax(path["temperature"].values, axis=-1)))
    lowest = float(np.nanmin(path["ess"].values)) / particles
    ok = bool(final >= 1.0 - 1e-6 and lowest >= LOWEST_PATH_ESS)
    if final < 1.0 - 1e-6:
        message = f"tempering stopped at temperature {final:.3g} < 1"
        advice = "more tempering steps (num_steps)"
    else:
        steps = int(np.max(np.sum(np.isfinite(path["temperature"].values), axis=-1)))
        message = f"{steps} tempering steps, lowest ess {100 * lowest:.1f}% of particles"
        message += "" if ok else " (weight collapse)"
        advice = "more tempering steps or more MCMC moves per step"
    return Check("smc_path", lowest, LOWEST_PATH_ESS, ok, message, advice)


def _resampled_paths(path: Any, particles: int) -> Check:
    """Paths resampled along the way (cmcd, scld): as ``smc_path``, the weights' ESS never
    below 1% of the paths between two resamplings."""
    lowest = float(np.nanmin(path["lowest_path_ess"].values)) / particles
    ok = bool(lowest >= LOWEST_PATH_ESS)
    resamplings = int(np.max(path["resamplings"].values))
    message = f"{resamplings} resamplings, lowest ess {100 * lowest:.1f}% of paths"
    message += "" if ok else " (weight collapse)"
    advice = "more steps (num_steps), longer training, or more paths (num_samples)"
    return Check("path_ess", lowest, LOWEST_PATH_ESS, ok, message, advice)


def _support(killed: np.ndarray, se: float) -> Check:
    """The ``support`` check from the per-step fractions of particles killed by a move
    (recorded in ``path_stats``; the check applies when some move killed one), against
    the standard error ``se`` of the pooled log Z (0 where there is none)."""
    bias = float(np.mean(np.nansum(killed, axis=-1)))
    ok = bool(bias <= se)
    message = f"moves into zero or NaN density: log Z biased by about -{bias:.3g}"
    message += "" if ok else f" (more than its SE {se:.2g})"
    return Check(
        "support",
        bias,
        se,
        ok,
        message,
        "smc (Metropolis-adjusted moves reject such proposals), or a density that is "
        "positive and finite everywhere (a transform to an unconstrained space)",
    )


# the between-runs variance of log Z may exceed the mean of the runs' own estimates of it
# (an SMC run's genealogy, an importance run's weights) by this factor times the
# chi-square bound: the genealogy estimate measured 1.2-2.1 times low in variance
# (bayeswb.samplers.smc.genealogy)
OWN_SPREAD_FACTOR = 2.0


def _log_z_spread(log_z_per_run: np.ndarray, own_variance: np.ndarray | None) -> list[Check]:
    values = np.asarray(log_z_per_run, dtype=np.float64).ravel()
    if values.size < 2:
        return []
    if not np.all(np.isfinite(values)):
        bad = int(np.sum(~np.isfinite(values)))
        return [
            Check(
                "log_z_spread",
                math.inf,
                1.0,
                False,
                f"{bad} of {values.size} runs have a non-finite log Z",
                "check the log density for NaN or infinite regions",
            )
        ]
    sd = float(np.std(values, ddof=1))
    scaled = np.exp(values - values.max())
    delta_se = np.std(scaled, ddof=1) / np.mean(scaled)
    ratio = float(delta_se / sd) if sd > 0 else 1.0
    ok = bool(sd <= 1.0 and 0.5 <= ratio <= 2.0)
    message = f"per-run log Z sd {sd:.2f}"
    if not ok:
        message += " (runs disagree; the log Z and its SE are not reliable)"
    if own_variance is not None:
        own_sd = math.sqrt(float(np.mean(np.maximum(own_variance, 0.0))))
        bound = OWN_SPREAD_FACTOR * chi2.ppf(0.99, values.size - 1) / (values.size - 1)
        message += f", {own_sd:.2g} by each run's own estimate"
        if sd > math.sqrt(bound) * own_sd + 1e-6:
            ok = False
            message += " (runs disagree beyond the variance each reports: some runs miss mass)"
    return [
        Check(
            "log_z_spread",
            sd,
            1.0,
            ok,
            message,
            "more particles per run or a better proposal/schedule",
        )
    ]
