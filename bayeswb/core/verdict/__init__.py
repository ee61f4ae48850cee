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

import warnings
from typing import Any

import arviz as az
import numpy as np

from bayeswb.core.verdict.check import Check, UnreliableRunWarning, Verdict, group, optional
from bayeswb.core.verdict.markov import markov_checks
from bayeswb.core.verdict.peaks import (
    BEST_DRAW_ATTRIBUTE,
    PEAK_ATTRIBUTE,
    UNVISITED_PEAK_ATTRIBUTE,
    UNVISITED_PEAK_RADIUS_ATTRIBUTE,
    density_peak,
    unvisited_mode,
)
from bayeswb.core.verdict.shifts import importance_shift, variance_shift, variational_checks
from bayeswb.core.verdict.training import (
    loss_trace,
    plateau_flags,
    plateau_reached,
    training_check,
)
from bayeswb.core.verdict.weights import (
    families,
    k_hat_threshold,
    normalised_weights,
    psis_k_hat,
    weight_checks,
    weighted_mean_variance,
    weights_ess,
)

__all__ = [
    "BEST_DRAW_ATTRIBUTE",
    "PEAK_ATTRIBUTE",
    "UNVISITED_PEAK_ATTRIBUTE",
    "UNVISITED_PEAK_RADIUS_ATTRIBUTE",
    "Check",
    "UnreliableRunWarning",
    "Verdict",
    "diagnose",
    "families",
    "importance_shift",
    "k_hat_threshold",
    "normalised_weights",
    "psis_k_hat",
    "variance_shift",
    "weighted_mean_variance",
    "weights_ess",
]


def diagnose(
    idata: az.InferenceData,
    config: dict[str, Any],
    partial: bool = False,
    markov: bool | None = None,
) -> Verdict:
    """The verdict on one run's InferenceData (see the package docstring for each check).

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
    stats = group(idata, "sample_stats")
    checks: list[Check] = [_finite_output(idata, stats)]
    weighted = stats is not None and "log_weight" in stats
    if markov is None:
        markov = (
            not weighted
            and stats is not None
            and any(name in stats for name in ("acceptance_rate", "step_size", "diverging"))
        )
    if markov:
        checks += markov_checks(idata, config)
    elif weighted:
        per_run = stats.get("log_marginal_likelihood")
        per_run_values = None if per_run is None else per_run.values
        checks += weight_checks(idata, stats["log_weight"].values, per_run_values)
    elif stats is not None:
        checks += variational_checks(idata, stats, fit_from_draws="num_shards" in config)
    plateau = plateau_flags(idata)
    if plateau is not None:
        checks.append(plateau_reached(plateau))
    else:
        checks += optional(training_check(loss_trace(idata)))
    checks += optional(density_peak(idata, config))
    checks += optional(unvisited_mode(idata, config))
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
