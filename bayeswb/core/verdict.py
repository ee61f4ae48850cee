"""A verdict on every run: the checks that apply to its draws, without any ground truth.

A user who brings a model without a known answer needs the run to say whether to believe
it. :func:`diagnose` looks at what a run recorded (its draws, sample stats, importance
weights, per-run log Z, the SMC path, the flow's training trace) and applies every check
the recorded data allow, each with a threshold from the literature:

- ``finite``: every position finite, no log density +inf at a draw (nor -inf or NaN at
  an unweighted draw: a variational fit that spills over a wall), no log weight NaN
  or +inf, some weight above zero in every run, every run's log Z finite (a density that
  is NaN or +inf where a run goes gives none of these).
- ``r_hat``: split rank-normalised R-hat of every parameter at most 1.01 (Vehtari, Gelman,
  Simpson, Carpenter and Buerkner 2021, "Rank-normalization, folding, and localization",
  section 4), for Markov chains.
- ``ess_bulk`` / ``ess_tail``: bulk and tail effective sample size at least 100 per chain
  up to 400 in all (the same paper, section 4: "ESS > 400", i.e. 100 for each of 4 chains).
  Chains of fewer than 4 draws fail ``too_few_draws`` instead: split R-hat and ESS are
  not defined for them.
- ``divergences``: no divergent transition after warmup (Betancourt 2017, "A conceptual
  introduction to Hamiltonian Monte Carlo", section 6.2); for the Langevin kernels a
  divergence is a non-finite step.
- ``e_bfmi``: energy Bayesian fraction of missing information at least 0.3 per chain
  (Betancourt 2016, "Diagnosing suboptimal cotangent disintegrations in HMC", eq. 3),
  for HMC and NUTS.
- ``tree_depth``: under 1% of NUTS transitions stopped by the maximum tree depth.
- ``energy_error``: for an unadjusted sampler tuned to an energy-error variance (mclmc:
  ``Var[E] / d = desired_energy_variance``, Robnik et al. 2023, which bounds its bias:
  Robnik and Seljak 2024), that variance over each chain's draws is at most 20 times the
  target. The tuning holds where warmup went; a chain whose draws reach regions where the
  step is too large has rare huge energy errors, and the bias that R-hat and ESS cannot
  see. Measured with mclmc's defaults (4 chains x 5000, seeds 0-2): worst chains 0.2-6
  times the target on gaussian, logistic_breast_cancer and gp_regression (accurate);
  5-215 on eight_schools_noncentered, where one run of 4 x 24,499 draws at 170 had its
  means 5.2 MCSE and its sds 4.4% off with every other check passing (the defaults
  sweep); 64-1395 on banana and the funnel (flagged by R-hat already).
- ``cycle_phase``: for cyclical SG-MCMC (csgmcmc), the first and the second half of the
  cycles' sampling stages have the same means and variances: flagged where they differ
  beyond chance (z-scores with MCSEs from each half's ESS, bound 1% family-wise) and by
  more than 20% (of the sd for means, relatively for variances). A stage too short to
  forget the SGD stage before it leaves its draws near the mode: measured on a Gaussian
  posterior (tests/samplers/test_sg_hamiltonian.py), cycles of 20 gave a third of the
  posterior's variance with R-hat 1.001 and bulk ESS 8115 (4 x 40,000 draws), z 22;
  cycles of 50, 0.6 of it, z 17. Cycles of 400 (variance 0.95-1.01 of it): z 1.0-2.7 at
  4 x 40,000 draws (seeds 0-3), 0.9-3.2 at 4 x 20,000 (seeds 0-6); the 20% floor keeps
  the one z above 3.0 quiet.
- ``acceptance``: every chain's mean acceptance rate within 0.25 of the rate the step size
  was adapted to (adaptation failed or a chain is stuck otherwise); SMC moves whose mean
  acceptance over the path is below 0.05 do not move the particles.
- ``pareto_k``: PSIS k-hat of the importance weights below ``min(1 - 1/log10(S), 0.7)``
  for S draws per run (Vehtari, Simpson, Gelman, Yao and Gabry 2024, "Pareto smoothed
  importance sampling", section 3.2.4). For variational draws it is the k-hat of
  ``log p - log q`` (Yao, Vehtari, Simpson and Gelman 2018, "Yes, but did it work?").
- ``importance_shift``: for variational draws (and consensus averages) whose k-hat
  passes, the importance weights ``p / q`` would move the draws' mean: flagged where a
  coordinate's shift (the weighted minus the plain mean, pooled over runs) is beyond
  chance, ``z`` above the two-sided normal bound at 1% family-wise over coordinates
  (delta-method standard error, draws taken as independent), and beyond that bound times
  the Monte Carlo error of the draws' own pooled mean, which a bias must exceed to matter:
  the larger of ``sd / sqrt(ESS)`` and the spread of the runs' shifts over ``sqrt(runs)``.
  The second carries what the ESS misses when the fit is made from the draws themselves
  (consensus: its product Gaussian's mean is the draws' mean, so the shift is that mean's
  whole error). With ``sd / sqrt(draws)`` alone, 14 of 20 seeds of consensus (16 runs) on
  a model whose sub-posteriors are Gaussian, exact but for the fit's error, were flagged.
  A k-hat below 0.7 says the weights are usable, not that the fit's moments are right:
  measured with the defaults on logistic_breast_cancer (4 runs or 2), fullrank_vi passes
  k-hat with its means 0.14 sd off (shift 0.14 sd, z 5.4) and consensus with two shards
  0.38 sd off (shift 0.32 sd, z 7.4).
  The same test is also made in each run alone (bound 1% family-wise over runs and
  coordinates; a shift beyond that bound times the run's own MCSE, ``sd / sqrt(ESS)`` of
  the run as one chain), except where ``q`` was fitted to the draws themselves
  (consensus), whose runs' shifts are their own Monte Carlo error: fits that each miss
  in their own direction average out in the pooled shift, and the spread term above then
  takes their misses for noise. fbgvi with defaults on logistic_breast_cancer (4 runs of
  49,499 draws, seeds 0 and 1) was such a fit: each run 0.1-0.2 sd off, the pooled
  means 0.07 sd off, 25 times the MCSE ArviZ reports (whose ESS missed the runs'
  differences), and the verdict was "fine". Measured with the per-run test: 0 false
  alarms in 1000 seeds for each of the exact and the wrong-width fits above; consensus
  on the Gaussian-mean model (16 runs), 0 of 20; meanfield_vi and fullrank_vi on
  ``gaussian`` (defaults, 4 runs), 0 of 4 seeds each; pathfinder there, one of 4 seeds
  flagged, a run whose mean was 0.15 sd off (5 of its MCSEs).
- ``variance_shift``: the same test (pooled and per run, same bounds) of the variances:
  each draw's squared deviation from its run's weighted mean, weighted, against its
  squared deviation from the run's plain mean. A symmetric fit can have its means right
  and its widths wrong: fullrank_vi on two modes at (-4, 0) and (4, 0) had an sd of
  3.5-3.6 along them against the true 4.12, k-hat passing and the means right, and the
  verdict said "fine" (flagged now, weights moving the variance by 0.31-0.39 of it).
  With defaults, pathfinder on ``gaussian`` (sds up to 14% off, sd_z 8-9, seeds 0 and 1)
  is flagged too; meanfield_vi and fullrank_vi there (sds 2-3% off, within their MCSE)
  are not. False alarms, measured: 0 in 1000 seeds for exact fits and for fits 0.2 and
  0.3 sd off the mean with the right width (4 runs of 1000 draws in 3-d), 0 of 20 seeds
  of consensus on the Gaussian-mean model (16 runs); 12 in 1000 for a Student-t fit with
  5 degrees of freedom and the right variance (its squares have no variance, so their
  MCSE is not reliable). Wrong widths 1.3, 0.9, 1.05 and 0.95: flagged in 1000 of 1000.
- ``weights_ess``: Kish effective sample size of the final weights at least 100 per run up
  to 400 in all, as ``ess_bulk`` for chains (weight collapse otherwise).
- ``smc_path``: the tempering path reached temperature 1, and its ESS never fell below 1%
  of the particles (weight collapse between two resamplings).
- ``path_ess``: the same for paths resampled along the way (cmcd, scld): their weights' ESS
  after any step never below 1% of them.
- ``support``: no particle was moved where the density is zero or NaN by an unadjusted
  transport (smc_langevin, smc_flow). Such a move gets weight zero, but the transport's
  backward kernel (a Gaussian step) also puts mass there, so the incremental weights of
  Del Moral, Doucet and Jasra (2006, eq. 31) no longer integrate to one over the support:
  log Z is biased down by about the weighted fraction of particles lost, summed over the
  path (measured on a standard normal cut at x0 > 2: bias 0.23, fraction 0.22), and the
  draws are biased near the boundary. It fails when that sum exceeds the reported standard
  error of log Z (:func:`~bayeswb.core.log_evidence.combine_log_z`; or is above zero where
  there is none).
- ``bridge_estimates``: for Monte Carlo fusion (mc_fusion), the weight set to zero where a
  Poisson estimate of a bridge expectation came out negative (its bound, read from a
  pilot bridge, was exceeded) is a small share of all the weight: mean share over runs at
  most ``NEGATIVE_WEIGHT_SHARE / sqrt(ESS)`` for the weights' pooled ESS (the share of
  each run's worst fusion, averaged over the runs). Dropping a
  share ``p`` of the weight moves a weighted mean by about ``p`` times the distance of
  the dropped draws from it, so at a few sds that is a bias below a fraction of the
  Monte Carlo error ``sd / sqrt(ESS)``; and no Poisson count exceeded the points
  computed. Measured with the defaults (balanced binary tree, 8 runs of 1000): 0.05% of
  the weight (the bound 0.48%) on a model with skewed sub-posteriors, none on Gaussian
  ones; with all shards fused at once and a bound margin of 2 instead of 8, 1.1%, which
  fails.
- ``runs_agree``: independent runs' weighted means agree within the standard errors each
  run reports (between-run variance against squared MCSE, by particle families for SMC;
  see :func:`weighted_mean_variance`): the weighted analogue of R-hat over independent
  runs. It fails above twice the chi-square bound at 1% family-wise over coordinates:
  the runs' own variance estimates scatter (coefficient of variation 0.3-0.6 over runs of
  default smc), which makes the ratio heavier-tailed than chi-square. Measured on default
  smc and ais, 8 groups of 4 runs on each of gaussian, banana, gmm25 and
  eight_schools_noncentered: 2 of 32 groups over the plain bound, none over twice it.
- ``log_z_spread``: independent runs' log Z agree with the reported standard error: the
  delta-method SE of the pooled estimate and the SE of the mean of the per-run log Z
  within a factor 2 of each other, and the per-run log Z within sd 1 (beyond that the
  pooled mean is dominated by a few runs, and its SE is not to be believed). Where the
  runs estimate their own variance (SMC: :mod:`bayeswb.samplers.smc.genealogy`; importance
  samplers: the weights' variance), their variance over runs must also stay below twice
  the chi-square bound at 1% times the mean of those estimates (twice: the SMC estimate
  measured up to 2.1 times low in variance): runs that each claim a precise log Z yet
  disagree have missed mass, each a different part. Measured on the defaults, groups of 4
  runs: smc, ais and smc_langevin, 74 groups over gaussian, banana, gmm25, rezende_u3,
  eight_schools_noncentered and funnel, none fired; is and vis, 24 groups over gaussian,
  banana, logistic_breast_cancer and eight_schools_noncentered, none fired (one failed
  the sd bound above); flow_is on rezende_u1, 1 of 4 fired, where one run's log Z was
  0.48 below the other three's (its k-hat 0.84).
- ``training``: a flow's training stopped by its plateau rule, not its step cap, in every run
  (where the flow recorded it), and the Laplace proposal's search found a mode (a small Newton
  decrement, see ``is``; a density without a maximum has none); for a fit run a fixed number of
  steps (a flow's ``loss``, the ``elbo`` of the variational samplers, a chi^2 fit's
  ``log_mean_w2``), the loss had stopped improving: the mean over the last tenth of training is not
  below the tenth before it by more than 3 standard errors (a one-sided z-test: 0.13% false alarms
  per converged run with independent noise; measured on the defaults of meanfield_vi, fullrank_vi
  and fbgvi, 4 runs each on gaussian, banana, eight_schools_noncentered and logistic_breast_cancer,
  seeds 0 and 1: worst z per run group 2.88, none above 3).
- ``density_peak``: no region of far higher density than any draw came near: the log
  density an L-BFGS climb from the best draws reaches (recorded by ``bw.sample``, see
  :mod:`bayeswb.execution.peak_search`) exceeds the best draw's by at most
  ``d + sqrt(d)`` in ``d`` dimensions. For a log-concave target the best of n
  independent draws exceeds that with probability at most ``2^-n`` (Fradelizi, Madiman
  and Wang 2016); a larger gap means a narrow region (a funnel's neck, a spike) that the
  run never entered, whose mass is missing from every estimate.
- ``unvisited_mode``: no peak of the density far from every draw (more than 5 of the
  draws' sds per coordinate, root mean square, from the nearest, or 3 sds beyond every
  draw along its line from their mean) reaches within ``d + sqrt(d)`` of the best draw's
  log density (the bound of ``density_peak``). The
  peaks are climbed by L-BFGS from 16 points of ``N(0, s^2 I)``, ``s`` the reach of the
  density seen along rays from the origin (:mod:`bayeswb.core.probe`), and 8 each of
  ``N(0, (4 s)^2 I)`` and ``N(0, (16 s)^2 I)``; a peak where a climb from the draws
  also ended is ``density_peak``'s region, not another mode, and a climb that stopped
  on a slope is no peak (:func:`bayeswb.execution.peak_search.unvisited_peaks`). A run that
  collapsed on some of several modes (a variational fit, an importance proposal, chains
  that stayed where they started) passes every other check when its runs collapse
  alike: found by the defaults sweep, vis on gmm25 (one mode of 25, log Z off by
  log 25, k-hat 0.27) said "fine". With 8 starts, none fell in the far mode's basin of a
  2-d two-mode test target (tests/bayeswb/test_verdict.py); each start costs up to 300
  L-BFGS iterations after the run, not counted in its cost.
- ``complete``: the run was not interrupted.

Example:
    >>> import bayeswb as bw
    >>> r = bw.sample("gaussian", "nuts", num_chains=4, num_samples=500, num_warmup=500)
    >>> r.diagnostics.ok, [check.name for check in r.diagnostics.checks][:4]
    (True, ['finite', 'r_hat', 'ess_bulk', 'ess_tail'])
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import arviz as az
import numpy as np
import xarray as xr
from scipy.special import logsumexp
from scipy.stats import chi2, norm

from bayeswb.core.log_evidence import combine_log_z
from bayeswb.core.probe import scale_for_reach


class UnreliableRunWarning(UserWarning):
    """A run's verdict found a reason not to trust its draws or its log Z."""


@dataclasses.dataclass(frozen=True)
class Check:
    """One diagnostic: its measured ``value``, the ``threshold`` it is held to, whether it
    passed (``ok``), a one-line ``message`` and, when it failed, ``advice`` on what to try."""

    name: str
    value: float
    threshold: float
    ok: bool
    message: str
    advice: str = ""


@dataclasses.dataclass(frozen=True)
class Verdict:
    """Every check that applied to a run; ``ok`` when all passed.

    ``str(verdict)`` is one line: ``"verdict: fine (...)"`` or ``"verdict: UNRELIABLE
    (...); try: ..."``.
    """

    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(check for check in self.checks if not check.ok)

    def __str__(self) -> str:
        if not self.checks:
            return "verdict: no diagnostic applies to this run"
        if self.ok:
            return "verdict: fine (" + "; ".join(c.message for c in self.checks) + ")"
        failed = self.failed
        advice = "; ".join(dict.fromkeys(c.advice for c in failed if c.advice))
        line = "verdict: UNRELIABLE (" + "; ".join(c.message for c in failed) + ")"
        return line + (f"; try: {advice}" if advice else "")

    def to_dict(self) -> dict[str, Any]:
        """The checks as plain data (for tables and JSON)."""
        return {"ok": self.ok, "checks": [dataclasses.asdict(c) for c in self.checks]}


# ----------------------------------------------------------------------------- weights


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
    stats = _group(idata, "sample_stats")
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


# ------------------------------------------------------------------------------ checks


# what bayeswb.execution.peak_search records on unconstrained_posterior
PEAK_ATTRIBUTE = "peak_log_density"
BEST_DRAW_ATTRIBUTE = "best_draw_log_density"
UNVISITED_PEAK_ATTRIBUTE = "unvisited_peak_log_density"
UNVISITED_PEAK_RADIUS_ATTRIBUTE = "unvisited_peak_radius"  # its distance from the origin


def _group(idata: az.InferenceData, name: str) -> Any:
    return getattr(idata, name, None) if name in idata.groups() else None


# the fewest draws per chain for which split R-hat and ESS are defined
MIN_DRAWS = 4


def _ess_threshold(num_units: int) -> float:
    return 100.0 * min(num_units, 4)


def _markov_checks(idata: az.InferenceData, config: dict[str, Any]) -> list[Check]:
    posterior = idata.posterior
    chains, draws = posterior.sizes["chain"], posterior.sizes["draw"]
    if draws < MIN_DRAWS:
        return [
            Check(
                "too_few_draws",
                draws,
                MIN_DRAWS,
                False,
                f"{draws} draws per chain: too few to judge (R-hat and ESS need {MIN_DRAWS})",
                "more draws (num_samples)",
            )
        ]
    checks = []
    r_hat = _max_over(az.rhat(posterior))
    checks.append(
        Check(
            "r_hat",
            r_hat,
            1.01,
            bool(r_hat <= 1.01),
            f"r_hat {r_hat:.3f}" + ("" if r_hat <= 1.01 else " > 1.01"),
            "more warmup and draws, or a sampler that handles this geometry "
            "(reparametrise, or smc for several modes)",
        )
    )
    need = _ess_threshold(chains)
    for method in ("bulk", "tail"):
        ess = _min_over(az.ess(posterior, method=method))
        checks.append(
            Check(
                f"ess_{method}",
                ess,
                need,
                bool(ess >= need),
                f"ess_{method} {_whole(ess)}" + ("" if ess >= need else f" < {need:.0f}"),
                "more draws (num_samples) or more chains",
            )
        )
    stats = _group(idata, "sample_stats")
    if stats is not None:
        checks += _hamiltonian_checks(stats, config)
        if "acceptance_rate" in stats and "target_acceptance_rate" in config:
            checks.append(_acceptance(stats["acceptance_rate"].values, config))
        positions = _group(idata, "unconstrained_posterior")
        if (
            "energy_change" in stats
            and "desired_energy_variance" in config
            and positions is not None
        ):
            dim = positions["position"].shape[-1]
            checks.append(_energy_error(stats["energy_change"].values, dim, config))
        if "cycle_length" in config and "step_size" in stats:
            checks.append(_cycle_phase(posterior, stats["step_size"].values))
    return checks


def _cycle_phase(posterior: xr.Dataset, step_size: np.ndarray) -> Check:
    """Do the first and the second half of the cycles' sampling stages (csgmcmc) have one
    law? A draw's place in its stage is read off its step, which falls through the stage:
    each chain's draws above its median step are the early half. Per coordinate, the
    halves' means and variances are compared by z-scores with Monte Carlo standard errors
    from ArviZ's ESS of each half; flagged beyond the normal bound at 1% family-wise."""
    early = step_size > np.median(step_size, axis=1, keepdims=True)
    length = int(min(early.sum(axis=1).min(), (~early).sum(axis=1).min()))
    if length < MIN_DRAWS:
        return Check("cycle_phase", math.nan, math.nan, True, "cycle halves: too few draws", "")
    flat = np.concatenate(
        [v.values.reshape(*v.shape[:2], -1) for v in posterior.data_vars.values()], axis=-1
    )
    halves = [
        np.stack([draws[keep][:length] for draws, keep in zip(flat, side, strict=True)])
        for side in (early, ~early)
    ]  # each (chains, length, coordinates)
    centre, variance = flat.mean(axis=(0, 1)), flat.var(axis=(0, 1))
    z, effect = [], []
    for moment, unit in (
        (lambda x: x, np.sqrt(variance)),
        (lambda x: (x - centre) ** 2, variance),
    ):
        means, errors = [], []
        for half in halves:
            values = moment(half)
            ess = az.ess(xr.Dataset({"m": (("chain", "draw", "k"), values)}))["m"].values
            means.append(values.mean(axis=(0, 1)))
            errors.append(values.std(axis=(0, 1)) / np.sqrt(np.maximum(ess, 1.0)))
        with np.errstate(divide="ignore", invalid="ignore"):
            z.append(np.abs(means[0] - means[1]) / np.hypot(*errors))
            effect.append(np.abs(means[0] - means[1]) / unit)
    z_all, effect_all = np.nan_to_num(np.concatenate(z)), np.nan_to_num(np.concatenate(effect))
    bound = float(norm.ppf(1.0 - 0.01 / (2 * 2 * flat.shape[-1])))
    flagged = (z_all > bound) & (effect_all > CYCLE_HALVES_EFFECT)
    worst = float(np.max(np.where(flagged, z_all, 0.0) if flagged.any() else z_all))
    ok = not bool(flagged.any())
    return Check(
        "cycle_phase",
        worst,
        bound,
        ok,
        f"cycle halves' moments z {worst:.1f}"
        + (
            ""
            if ok
            else f" > {bound:.1f}, differing by more than {CYCLE_HALVES_EFFECT:.0%}: the "
            "draws still carry the exploration stage's law"
        ),
        "longer cycles (cycle_length), so that each sampling stage forgets the SGD stage",
    )


# how far the cycle halves' means (in sds) or variances (relative) must differ, besides
# beyond chance, for cycle_phase to flag them (module docstring)
CYCLE_HALVES_EFFECT = 0.2


# how far above its tuning target an unadjusted sampler's energy error may drift (module
# docstring, ``energy_error``)
ENERGY_VARIANCE_FACTOR = 20.0


def _energy_error(energy_change: np.ndarray, dim: int, config: dict[str, Any]) -> Check:
    """Each chain's ``Var[E] / d`` over its draws against the ``desired_energy_variance``
    that its step was tuned to."""
    desired = float(config["desired_energy_variance"])
    worst = float(np.max(np.var(energy_change, axis=-1)) / dim / desired)
    ok = bool(worst <= ENERGY_VARIANCE_FACTOR)
    return Check(
        "energy_error",
        worst,
        ENERGY_VARIANCE_FACTOR,
        ok,
        f"energy error Var[E]/d {worst:.1f} x the tuned {desired:g}"
        + ("" if ok else f" (> {ENERGY_VARIANCE_FACTOR:g} x): the unadjusted draws are biased"),
        "an adjusted sampler (mams, nuts), or a smaller desired_energy_variance",
    )


def _hamiltonian_checks(stats: Any, config: dict[str, Any]) -> list[Check]:
    checks = []
    if "diverging" in stats:
        count = int(np.sum(stats["diverging"].values))
        checks.append(
            Check(
                "divergences",
                count,
                0,
                count == 0,
                f"{count} divergences",
                "a higher target_acceptance_rate (smaller steps) or a reparametrisation "
                "(e.g. non-centred)",
            )
        )
    if "energy" in stats and "n_steps" in stats:
        e_bfmi = float(np.min(az.bfmi(stats["energy"].values)))
        checks.append(
            Check(
                "e_bfmi",
                e_bfmi,
                0.3,
                bool(e_bfmi >= 0.3),
                f"e_bfmi {e_bfmi:.2f}" + ("" if e_bfmi >= 0.3 else " < 0.3"),
                "a reparametrisation: the momentum resampling cannot explore the energy",
            )
        )
    if "tree_depth" in stats and "max_num_doublings" in config:
        depth = stats["tree_depth"].values
        saturated = float(np.mean(depth >= config["max_num_doublings"]))
        checks.append(
            Check(
                "tree_depth",
                saturated,
                0.01,
                bool(saturated < 0.01),
                f"{100 * saturated:.1f}% at max tree depth",
                "a larger max_num_doublings, or a reparametrisation",
            )
        )
    return checks


def _acceptance(rates: np.ndarray, config: dict[str, Any]) -> Check:
    target = float(config["target_acceptance_rate"])
    per_chain = np.nanmean(rates, axis=-1)
    worst = float(per_chain[np.argmax(np.abs(per_chain - target))])
    ok = bool(abs(worst - target) <= 0.25)
    return Check(
        "acceptance",
        worst,
        target,
        ok,
        f"acceptance {worst:.2f}" + ("" if ok else f" (adapted to {target:.2f})"),
        "more warmup (num_warmup) so the step size can adapt",
    )


def _weight_checks(
    idata: az.InferenceData, log_weights: np.ndarray, log_z_per_run: np.ndarray | None
) -> list[Check]:
    runs, per_run = log_weights.shape[0], log_weights.shape[-1]
    need = _ess_threshold(runs)
    ess = weights_ess(log_weights)
    checks = [
        Check(
            "weights_ess",
            ess,
            need,
            bool(ess >= need),
            f"weights' ess {_whole(ess)}"
            + ("" if ess >= need else f" < {need:.0f}")
            + (" (collapsed)" if ess < 0.01 * log_weights.size else ""),
            "more particles (num_samples), or a proposal closer to the target",
        )
    ]
    own = _group(idata, "sample_stats").get("log_z_relative_variance")
    own_variance = None if own is None else own.values
    path = _group(idata, "path_stats")
    if path is not None and "pareto_k" in path:
        checks.append(_k_hat(float(np.nanmax(path["pareto_k"].values)), per_run))
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
    positions = _group(idata, "unconstrained_posterior")
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


def _k_hat(k_hat: float, draws_per_run: int) -> Check:
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


def _variational_checks(
    idata: az.InferenceData, stats: Any, fit_from_draws: bool = False
) -> list[Check]:
    """k-hat of ``log p - log q`` at the draws, and where it allows importance weights,
    the shift of the means they imply (module docstring); ``fit_from_draws``: ``q`` was
    fitted to the draws themselves (consensus), so no run's shift is tested alone."""
    if "log_q" not in stats or "lp" not in stats:
        return []
    log_ratios = np.asarray(stats["lp"].values - stats["log_q"].values, dtype=np.float64)
    worst = max(psis_k_hat(run) for run in log_ratios)
    check = dataclasses.replace(
        _k_hat(worst, log_ratios.shape[-1]),
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
    pooled and (``each_run``) in each run alone; module docstring, ``importance_shift``.
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
    module docstring, ``importance_shift``. Shifts are shown in sds of the draws."""
    shift = _weight_shift(_run_weights(log_ratios), positions, each_run)
    sd = positions.reshape(-1, positions.shape[-1]).std(axis=0)
    return _shift_check("importance_shift", shift, sd, "mean", "sd")


def variance_shift(log_ratios: np.ndarray, positions: np.ndarray, each_run: bool = True) -> Check:
    """:func:`importance_shift` of the squared deviations, from each run's weighted mean
    (weighted) and from its plain mean (plain): whether the weights move the draws'
    variances (module docstring, ``variance_shift``).
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


def _training(trace: np.ndarray | None) -> Check | None:
    """The plateau test of the module docstring on a (runs, steps) loss trace."""
    if trace is None:
        return None
    steps = trace.shape[-1]
    window = steps // 10
    if window < 5:
        return None
    worst = 0.0
    for run in trace:
        run = run[np.isfinite(run)]
        if run.size < 2 * window:
            continue
        last, before = run[-window:], run[-2 * window : -window]
        se = math.sqrt(last.var(ddof=1) / window + before.var(ddof=1) / window)
        worst = max(worst, float((before.mean() - last.mean()) / se) if se > 0 else 0.0)
    ok = bool(worst <= 3.0)
    return Check(
        "training",
        worst,
        3.0,
        ok,
        "training converged" if ok else "training still improving",
        "more training steps (num_warmup)",
    )


def diagnose(
    idata: az.InferenceData,
    config: dict[str, Any],
    partial: bool = False,
    markov: bool | None = None,
) -> Verdict:
    """The verdict on one run's InferenceData (see the module docstring for each check).

    ``config`` is the run's sampler config as a dict (for the step-size target and the
    maximum tree depth); ``markov`` says whether the draws are Markov chains (None:
    guessed from the sample stats: unweighted draws that carry an acceptance rate, a step
    size or divergences).
    """
    with warnings.catch_warnings():
        # the verdict reports what ArviZ and numpy would warn about (too few draws, NaN)
        warnings.simplefilter("ignore")
        return Verdict(tuple(_checks(idata, config, partial, markov)))


def _checks(
    idata: az.InferenceData, config: dict[str, Any], partial: bool, markov: bool | None
) -> list[Check]:
    stats = _group(idata, "sample_stats")
    checks: list[Check] = [_finite_output(idata, stats)]
    weighted = stats is not None and "log_weight" in stats
    if markov is None:
        markov = (
            not weighted
            and stats is not None
            and any(name in stats for name in ("acceptance_rate", "step_size", "diverging"))
        )
    if markov:
        checks += _markov_checks(idata, config)
    elif weighted:
        per_run = stats.get("log_marginal_likelihood")
        per_run_values = None if per_run is None else per_run.values
        checks += _weight_checks(idata, stats["log_weight"].values, per_run_values)
    elif stats is not None:
        checks += _variational_checks(idata, stats, fit_from_draws="num_shards" in config)
    plateau = _plateau_flags(idata)
    if plateau is not None:
        checks.append(_plateau_reached(plateau))
    else:
        checks += _optional(_training(_loss_trace(idata)))
    checks += _optional(_density_peak(idata, config))
    checks += _optional(_unvisited_mode(idata, config))
    if partial:
        checks.append(Check("complete", 0.0, 1.0, False, "interrupted run", "bw.resume the run"))
    return checks


def _finite_output(idata: az.InferenceData, stats: Any) -> Check:
    """Every position finite; no log density +inf at a draw; no log weight NaN or +inf and
    every run with a weight above zero; every run's log Z finite."""
    problems = []
    positions = np.asarray(idata.unconstrained_posterior["position"].values)
    bad = int(np.sum(~np.all(np.isfinite(positions), axis=-1)))
    if bad:
        problems.append(f"{bad} of {positions[..., 0].size} positions NaN or infinite")
    if stats is not None and "lp" in stats and np.any(np.isposinf(stats["lp"].values)):
        problems.append("log density +inf at a draw")
    if stats is not None and "lp" in stats and "log_weight" not in stats:
        # an unweighted draw stands for itself: one where the density is zero or NaN is
        # outside the support (a weighted one there has weight zero, which is fine)
        lp = np.asarray(stats["lp"].values, dtype=np.float64)
        bad = int(np.sum(np.isnan(lp) | np.isneginf(lp)))
        if bad:
            problems.append(f"{bad} of {lp.size} draws where the log density is -inf or NaN")
    if stats is not None and "log_weight" in stats:
        log_w = np.asarray(stats["log_weight"].values, dtype=np.float64)
        bad = int(np.sum(np.isnan(log_w) | np.isposinf(log_w)))
        if bad:
            problems.append(f"{bad} log weights NaN or +inf")
        empty = int(np.sum(np.all(np.isneginf(log_w), axis=-1)))
        if empty:
            problems.append(f"every weight zero in {empty} of {log_w.shape[0]} runs")
    if stats is not None and "log_marginal_likelihood" in stats:
        log_z = np.asarray(stats["log_marginal_likelihood"].values, dtype=np.float64)
        bad = int(np.sum(~np.isfinite(log_z)))
        if bad:
            problems.append(f"log Z not finite in {bad} of {log_z.size} runs")
    return Check(
        "finite",
        float(len(problems)),
        0.0,
        not problems,
        "; ".join(problems) if problems else "output finite",
        "make the log density finite where the target is positive and -inf (weight zero) "
        "outside its support; NaN or +inf anywhere a run goes breaks it",
    )


def _density_peak(idata: az.InferenceData, config: dict[str, Any]) -> Check | None:
    positions = _group(idata, "unconstrained_posterior")
    if positions is None or PEAK_ATTRIBUTE not in positions.attrs:
        return None
    dim = positions["position"].shape[-1]
    gap = float(positions.attrs[PEAK_ATTRIBUTE]) - float(positions.attrs[BEST_DRAW_ATTRIBUTE])
    bound = dim + math.sqrt(dim)
    ok = bool(gap <= bound)
    return Check(
        "density_peak",
        gap,
        bound,
        ok,
        f"best draw's log density within {gap:.1f} of the peak found"
        if ok
        else f"the log density rises {gap:.3g} above the best draw (> {bound:.1f}): a narrow "
        "region of high density that no draw entered",
        _local_scales_advice(config),
    )


# what smc or ais with an MCMC move can do about a narrow region it never entered, measured
# (defaults otherwise): on the dim-10 funnel (8 runs of 1000 particles) |delta log Z| 1.01
# and 1.39 (seeds 0, 1) with the default MALA, 0.38 and 0.33 with move="local_hmc" and 20
# sweeps per temperature (0.22 with 50, seed 0), at 25 times the gradients; MALA with 20
# or 50 sweeps gave 0.85 and 1.00; ais (seed 0) 0.94 -> 0.23 at 30 times the gradients.
# smc, seed 0, 4 runs, the largest posterior-mean error in MCSE-adjusted sds:
# eight_schools_centered 8.9 -> 5.0, brownian_motion 290 -> 7.0 (both still flagged),
# stochastic_volatility 3.6 -> 2.4; on horseshoe_diabetes, where this check passes,
# 1.8 -> 4.0: advice for this check, not a better default. Unwhitened (precondition=False,
# the same 20 local_hmc sweeps, measured side by side with the whitened ones): the funnel
# 0.26 and 0.21 (seeds 0, 1) against 0.41 (seed 0) whitened; eight_schools_centered 2.5
# against 3.5, horseshoe_diabetes 1.9 against 3.4, stochastic_volatility 3.0 against 2.4,
# and brownian_motion, whose posterior is strongly correlated, 34 against 7.6; on a centred
# hierarchical normal of 12 groups (a user's numpyro model, 4 runs) log Z 0.40 low
# unwhitened against 0.27 whitened (truth from its non-centred form), within about one
# standard error: something to try on a funnel-like target, not a sure remedy
ANNEALING_LOCAL_SCALES = (
    "move='local_hmc' (steps scaled by the local gradient) with a fixed number of sweeps "
    "per temperature, num_mcmc_steps=20 or more"
)
UNWHITENED = (
    "on a funnel-like target (scales that change from region to region) also try "
    "precondition=False (unwhitened moves, which fail on strongly correlated targets)"
)


def _local_scales_advice(config: dict[str, Any]) -> str:
    """What to try when a narrow region of high density was never entered: for the
    samplers with smc's MCMC moves (smc, ais; fusion and fab have them too), their
    local-scale move first."""
    advice = (
        "a sampler that adapts to local scales, or a reparameterisation (non-centred); "
        "estimates miss whatever mass that region holds"
    )
    if "max_mcmc_steps" not in config or config.get("move") == "ula":
        return advice
    unwhitened = "" if config.get("precondition") is False else f", and {UNWHITENED}"
    if config.get("move") == "local_hmc":  # already local: on the funnel 50 sweeps beat 20
        return f"more sweeps per temperature (num_mcmc_steps){unwhitened}; or {advice}"
    return f"{ANNEALING_LOCAL_SCALES}{unwhitened}; or {advice}"


def _unvisited_mode(idata: az.InferenceData, config: dict[str, Any]) -> Check | None:
    positions = _group(idata, "unconstrained_posterior")
    if positions is None or UNVISITED_PEAK_ATTRIBUTE not in positions.attrs:
        return None
    dim = positions["position"].shape[-1]
    best = float(positions.attrs[BEST_DRAW_ATTRIBUTE])
    gap = best - float(positions.attrs[UNVISITED_PEAK_ATTRIBUTE])
    bound = dim + math.sqrt(dim)
    ok = bool(gap > bound)
    if math.isinf(gap):
        message = "no peak away from the draws"
    elif ok:
        message = f"peaks away from the draws at least {gap:.3g} below the best draw"
    else:
        height = f"{-gap:.3g} above" if gap < 0 else f"within {gap:.3g} of"
        message = (
            f"a peak far from every draw rises {height} the best draw (bound {bound:.1f}): "
            "a mode the run never visited"
        )
    return Check(
        "unvisited_mode",
        gap,
        bound,
        ok,
        message,
        _several_modes_advice(config, positions.attrs.get(UNVISITED_PEAK_RADIUS_ATTRIBUTE), dim),
    )


# measured on an equal mixture of N(0, I) and N((35, 0), I) in 2-d, defaults, seeds 0
# and 1: smc, ais and nrpt with their automatic reference (fitted to a pilot that never
# reached the far mode) were off by log 2 in log Z (0.68-0.70) and said "fine"; with the
# advised reference_scale=49.5 (twice the far peak's radius over sqrt(2)) |delta log Z|
# was 0.026-0.086 (smc), 0.015-0.019 (ais), 0.007-0.023 (nrpt), half the weight in each
# mode
def _several_modes_advice(config: dict[str, Any], radius: float | None, dim: int) -> str:
    """What to try when a peak far from every draw is as high as the best draw: a
    reference wide enough to reach it, for the samplers that anneal from one."""
    if radius is None:  # a run recorded before the radius was, or no peak away from it
        scale = "reference_scale wide enough to reach it"
    else:
        scale = (
            f"reference_scale={scale_for_reach(radius, dim):.3g} (the peak lies "
            f"{radius:.3g} from the origin)"
        )
    if config.get("reference_scale", 0.0) is None:  # the automatic reference, from a pilot
        return f"a fixed {scale}, in place of the reference fitted to a pilot that missed it"
    return (
        f"a sampler for several modes started wide enough to see it (smc or nrpt with "
        f"{scale}), or a wider start or proposal"
    )


def _plateau_flags(idata: az.InferenceData) -> np.ndarray | None:
    """Per run, whether a fit converged: a flow's training stopped by its plateau rule, or
    the Laplace proposal's search found a mode (its Newton decrement; recorded as
    ``training_converged`` per run or ``plateau`` per step), where the run used one."""
    for group in ("path_stats", "warmup_sample_stats"):
        data = _group(idata, group)
        if data is not None and "training_converged" in data:
            return np.asarray(data["training_converged"].values, bool).reshape(-1)
    for group in ("warmup_sample_stats", "path_stats"):
        data = _group(idata, group)
        if data is not None and "plateau" in data:
            flags = np.asarray(data["plateau"].values, bool)
            return np.asarray(flags.reshape(-1, flags.shape[-1]).any(axis=-1))
    return None


def _plateau_reached(converged: np.ndarray) -> Check:
    missed = int(np.sum(~converged))
    return Check(
        "training",
        missed,
        0,
        missed == 0,
        "training converged"
        if missed == 0
        else f"training did not converge (or the Laplace fit found no mode of finite "
        f"curvature) in {missed} of {converged.size} runs",
        "a larger num_warmup (the training cap); a Laplace fit without a mode may mean the "
        "density has no maximum (as a funnel's neck: reparameterise the model)",
    )


# the recorded training curves, each with the sign that makes it a loss (lower is better)
TRAINING_CURVES = (("loss", 1.0), ("log_mean_w2", 1.0), ("elbo", -1.0))


def _loss_trace(idata: az.InferenceData) -> np.ndarray | None:
    """The training loss per run and step, where the run recorded a training curve."""
    for group in ("warmup_sample_stats", "path_stats"):
        data = _group(idata, group)
        for name, sign in TRAINING_CURVES:
            if data is not None and name in data:
                values = sign * np.asarray(data[name].values, dtype=np.float64)
                return values.reshape(-1, values.shape[-1])
    return None


def _optional(check: Check | None) -> list[Check]:
    return [] if check is None else [check]


def _max_over(dataset: Any) -> float:
    return _reduce(dataset, np.nanmax, -math.inf)


def _whole(count: float) -> str:
    """An effective sample size as printed: its whole part, or ``nan`` where it is
    undefined (draws that are NaN or never moved).

    Example:
        >>> _whole(199.7), _whole(math.nan)
        ('199', 'nan')
    """
    return str(math.floor(count)) if math.isfinite(count) else "nan"


def _min_over(dataset: Any) -> float:
    return _reduce(dataset, np.nanmin, math.inf)


def _reduce(dataset: Any, reduce: Callable[..., Any], empty: float) -> float:
    """``reduce`` over every value of every variable, NaN ignored unless all are NaN (then
    NaN: the statistic is undefined, as for a chain that never moved)."""
    values = [np.ravel(dataset[name].values) for name in dataset.data_vars]
    values = [v for v in values if v.size]
    if not values:
        return empty
    joined = np.concatenate(values)
    if np.all(np.isnan(joined)):
        return math.nan
    return float(reduce(joined))
