"""The verdict (bayeswb/core/verdict/): each check fires on a constructed failure and
stays quiet on a healthy run.

False alarms: the healthy runs below are long (4 chains, ESS in the thousands), where split
R-hat above 1.01 has probability well under 1% (Vehtari et al. 2021, figure 9), the k-hat
of exact importance weights (ratio 1) is minus infinity, and the flow plateau test is a
3-standard-error one-sided z-test (0.13% per run).
"""

from __future__ import annotations

import warnings

import jax.numpy as jnp
import numpy as np
import pytest

import bayeswb as bw
from bayeswb.core.probe import scale_for_reach
from bayeswb.core.result import build_idata
from bayeswb.core.verdict import (
    BEST_DRAW_ATTRIBUTE,
    PEAK_ATTRIBUTE,
    UnreliableRunWarning,
    diagnose,
    k_hat_threshold,
    psis_k_hat,
    weighted_mean_variance,
)
from bayeswb.models.synthetic import mixture_target


def _chains(positions, **stats):
    return build_idata({"x": positions}, positions, stats)


def _failed(verdict):
    return {check.name for check in verdict.failed}


def test_healthy_nuts_run_is_fine_and_silent():
    target = bw.models.get("gaussian", dim=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnreliableRunWarning)
        result = bw.sample(target, "nuts", seed=0, num_chains=4, num_samples=1000)
    verdict = result.diagnostics
    assert verdict.ok, str(verdict)
    names = {check.name for check in verdict.checks}
    assert {"r_hat", "ess_bulk", "ess_tail", "divergences", "e_bfmi", "tree_depth"} <= names
    assert "density_peak" in names
    assert "acceptance" in names
    assert str(verdict).startswith("verdict: fine")
    assert bw.summary(result).attrs["verdict"] == str(verdict)
    assert bw.score(result, target)["verdict"] == "fine"


def test_disagreeing_chains_fail_r_hat():
    rng = np.random.default_rng(0)
    positions = rng.normal(size=(4, 500, 2))
    positions[0] += 3.0  # one chain in another mode
    verdict = diagnose(_chains(positions, acceptance_rate=np.full((4, 500), 0.8)), {})
    assert "r_hat" in _failed(verdict)
    assert "UNRELIABLE" in str(verdict) and "try:" in str(verdict)


def test_sticky_chains_fail_ess():
    rng = np.random.default_rng(1)
    # AR(1) with coefficient 0.999: ESS ~ 2000 * 4 / 2000 = 4 per chain
    noise = rng.normal(size=(4, 2000, 1))
    positions = np.zeros_like(noise)
    for i in range(1, 2000):
        positions[:, i] = 0.999 * positions[:, i - 1] + noise[:, i] * np.sqrt(1 - 0.999**2)
    verdict = diagnose(_chains(positions, step_size=np.ones((4, 2000))), {})
    assert {"ess_bulk", "ess_tail"} <= _failed(verdict)


def test_nan_draws_give_a_verdict_not_an_exception():
    # nrpt on a density that is +inf on a half-space: every draw NaN, so ArviZ's ESS is
    # NaN; printing it once raised "cannot convert float NaN to integer" from bw.sample
    positions = np.full((2, 400, 2), np.nan)
    verdict = diagnose(_chains(positions, acceptance_rate=np.zeros((2, 400))), {})
    assert {"finite", "ess_bulk", "ess_tail"} <= _failed(verdict), str(verdict)
    assert "ess_bulk nan" in str(verdict)


def test_divergences_ebfmi_tree_depth_and_acceptance_fire():
    rng = np.random.default_rng(2)
    positions = rng.normal(size=(4, 1000, 2))
    diverging = np.zeros((4, 1000), bool)
    diverging[1, 10] = True
    # energy a random walk: its first differences are tiny against its spread
    energy = np.cumsum(rng.normal(size=(4, 1000)), axis=1)
    stats = {
        "diverging": diverging,
        "energy": energy,
        "n_steps": np.full((4, 1000), 10),
        "tree_depth": np.full((4, 1000), 10),
        "acceptance_rate": np.full((4, 1000), 0.2),
    }
    config = {"max_num_doublings": 10, "target_acceptance_rate": 0.8}
    verdict = diagnose(_chains(positions, **stats), config)
    assert {"divergences", "e_bfmi", "tree_depth", "acceptance"} <= _failed(verdict)
    assert "r_hat" not in _failed(verdict)


def test_energy_error_fires_when_an_unadjusted_chain_leaves_its_tuning():
    """mclmc-like stats: energy changes of variance 5e-4 per dimension (the tuned target)
    are fine; one chain with rare huge errors (Var[E]/d 40 times it) fails. On an mclmc
    run the check runs (and passes on a Gaussian)."""
    rng = np.random.default_rng(4)
    positions = rng.normal(size=(4, 1000, 2))
    energy = rng.normal(scale=np.sqrt(2 * 5e-4), size=(4, 1000))
    config = {"desired_energy_variance": 5e-4}
    verdict = diagnose(_chains(positions, energy_change=energy, acceptance_rate=energy), config)
    assert "energy_error" not in _failed(verdict)
    energy[2, ::100] = np.sqrt(2 * 5e-4 * 40 * 100)  # 1% of steps: Var[E]/d about 40x
    verdict = diagnose(_chains(positions, energy_change=energy, acceptance_rate=energy), config)
    assert "energy_error" in _failed(verdict)
    r = bw.sample("gaussian", "mclmc", seed=0, num_chains=2, num_samples=2000)
    assert "energy_error" in [check.name for check in r.diagnostics.checks]
    assert "energy_error" not in _failed(r.diagnostics)


def test_heavy_tailed_weights_fail_k_hat_and_ess():
    rng = np.random.default_rng(3)
    # log weights of N(0, 1) draws for a N(0, 3^2) target: infinite variance, k > 0.7
    x = rng.normal(size=(4, 1000))
    log_weights = -0.5 * x**2 / 9 + 0.5 * x**2
    k = np.array([[psis_k_hat(run)] for run in log_weights])
    idata = build_idata(
        {"x": x[..., None]},
        x[..., None],
        {},
        log_weights=log_weights,
        log_z_per_run=np.zeros(4),
        path_stats={"pareto_k": k},
    )
    verdict = diagnose(idata, {})
    assert "pareto_k" in _failed(verdict)
    assert k.max() >= k_hat_threshold(1000)


def test_exact_weights_are_fine():
    x = np.random.default_rng(4).normal(size=(4, 1000, 1))
    idata = build_idata(
        {"x": x},
        x,
        {},
        log_weights=np.zeros((4, 1000)),
        log_z_per_run=np.zeros(4),
        path_stats={"pareto_k": np.full((4, 1), -np.inf)},
    )
    assert diagnose(idata, {}).ok


def test_weight_collapse_smc_path_and_log_z_spread_fire():
    x = np.random.default_rng(5).normal(size=(4, 1000, 1))
    log_weights = np.full((4, 1000), -np.inf)
    log_weights[:, :3] = 0.0  # three particles carry every run
    temperature = np.full((4, 10), np.nan)
    temperature[:, :4] = [0.1, 0.3, 0.6, 0.9]  # never reached 1
    idata = build_idata(
        {"x": x},
        x,
        {},
        log_weights=log_weights,
        log_z_per_run=np.array([0.0, -5.0, 2.0, -3.0]),
        path_stats={
            "temperature": temperature,
            "ess": np.full((4, 10), 500.0),
            "acceptance_rate": np.full((4, 10), 0.01),
        },
    )
    failed = _failed(diagnose(idata, {}))
    assert {"weights_ess", "smc_path", "move_acceptance", "log_z_spread"} <= failed


def test_path_ess_fires_on_paths_whose_weights_collapsed_between_resamplings():
    x = np.random.default_rng(7).normal(size=(4, 1000, 1))
    for lowest, fires in ((3.0, True), (300.0, False)):
        idata = build_idata(
            {"x": x},
            x,
            {},
            log_weights=np.zeros((4, 1000)),
            log_z_per_run=np.zeros(4),
            path_stats={
                "lowest_path_ess": np.array([[900.0], [lowest], [800.0], [700.0]]),
                "resamplings": np.full((4, 1), 5),
            },
        )
        assert ("path_ess" in _failed(diagnose(idata, {}))) == fires, lowest


def test_unconverged_flow_training_fires_and_plateau_does_not():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(2, 500, 1))
    steps = np.arange(1000)
    falling = 10.0 * np.exp(-steps / 2000.0) + 0.1 * rng.normal(size=(2, 1000))
    flat = 1.0 + 0.1 * rng.normal(size=(2, 1000))
    for loss, fires in ((falling, True), (flat, False)):
        idata = build_idata(
            {"x": x},
            x,
            {},
            log_weights=np.zeros((2, 500)),
            warmup_stats={"loss": loss},
        )
        assert ("training" in _failed(diagnose(idata, {}))) == fires


def test_variational_fit_stopped_while_its_elbo_still_rises_fails_training():
    # Adam (learning rate 0.01) moves the mean about 0.01 a step: after 100 steps it is
    # still 4 sds from the target's mean 5 and the ELBO still climbing; the default 2000
    # steps have levelled off (z at most 2.9 over 24 default runs of three VI samplers on
    # four models; the check: bayeswb/core/verdict/training.py)
    target = bw.Target.from_logdensity(lambda x: -0.5 * jnp.sum((x - 5.0) ** 2), dim=2)
    for steps, fires in ((100, True), (2000, False)):
        result = bw.sample(target, "meanfield_vi", seed=0, num_chains=2, num_warmup=steps)
        assert ("training" in _failed(result.diagnostics)) == fires, steps


def test_variational_fit_far_from_target_fails_k_hat():
    # mean-field VI of a strongly correlated Gaussian underestimates its spread
    target = bw.models.get("gaussian", dim=3, condition_number=1000, rotation=0)
    with pytest.warns(UnreliableRunWarning, match="k-hat"):
        result = bw.sample(target, "meanfield_vi", seed=0, num_chains=2, num_samples=1000)
    assert "pareto_k" in _failed(result.diagnostics)


def _shifted_fit(seed, offset, scale, runs=4, draws=1000, dim=3):
    """Draws of q = N(0, scale^2 I) as a fit of p = N(offset, I): ``(log p - log q, x)``."""
    x = scale * np.random.default_rng(seed).normal(size=(runs, draws, dim))
    log_ratio = -0.5 * np.sum((x - offset) ** 2, axis=-1) + 0.5 * np.sum((x / scale) ** 2, -1)
    return log_ratio, x


def test_importance_shift_fires_on_a_biased_fit_and_not_on_unbiased_ones():
    """q 0.2 sd off p's mean (k-hat far below 0.7): flagged (and at 0.1 sd off, 6 times the
    draws' MCSE: 100 of 100 seeds, measured). A q of the right mean but the wrong width
    (1.3 or 0.9) or exact: 0, 0 and 0 false alarms in 1000 seeds each (measured; the bound
    is 1% family-wise over coordinates), so at most one alarm in seeds 0-19 (two or more:
    probability below 0.002 per width at a rate below 0.3%, the 95% upper bound of 0 in
    1000)."""
    from bayeswb.core.verdict import importance_shift

    biased = importance_shift(*_shifted_fit(0, 0.2, 1.0))
    assert not biased.ok and "0.2" in biased.message, biased.message
    for scale in (1.0, 1.3, 0.9):
        alarms = [not importance_shift(*_shifted_fit(seed, 0.0, scale)).ok for seed in range(20)]
        assert sum(alarms) <= 1, (scale, alarms)


def test_importance_shift_fires_when_each_run_misses_its_own_way():
    """Four fits, each 0.2 sd off p's mean in its own direction (+, -, +, -), so that the
    pooled shift is about zero: each run's own shift is flagged (at its own bound,
    1% family-wise over runs and coordinates; the false-alarm rates above include it).
    fbgvi's default fits on logistic_breast_cancer were like this: each run 0.1-0.2 sd off
    in its own direction, the pooled draws 0.07 sd off and 25 times their MCSE, with the
    verdict "fine" before the per-run test (4 runs of 49499 draws, seeds 0 and 1)."""
    from bayeswb.core.verdict import importance_shift

    offsets = np.array([0.2, -0.2, 0.2, -0.2])[:, None, None]
    check = importance_shift(*_shifted_fit(0, offsets, 1.0))
    assert not check.ok and "run" in check.message and "0.2" in check.message, check.message


def test_variance_shift_fires_on_a_fit_of_the_wrong_width_and_not_on_right_ones():
    """q of the right mean but the wrong width (1.3 or 0.9 sd for p's 1): flagged, the
    weights move the variance by about 0.4 and 0.2 of it (1000 of 1000 seeds each, and at
    widths 1.05 and 0.95 too, measured). An exact q, or one 0.2 or 0.3 sd off p's mean with
    the right width: 0 false alarms in 1000 seeds each (measured), so at most one in seeds
    0-19. (A Student-t q with 5 degrees of freedom and p's variance, whose squares have no
    variance, gave 12 in 1000.)"""
    from bayeswb.core.verdict import variance_shift

    for scale in (1.3, 0.9):
        check = variance_shift(*_shifted_fit(0, 0.0, scale))
        assert not check.ok and "variance" in check.message, (scale, check.message)
    for offset in (0.0, 0.2, 0.3):
        alarms = [not variance_shift(*_shifted_fit(seed, offset, 1.0)).ok for seed in range(20)]
        assert sum(alarms) <= 1, (offset, alarms)


def test_a_symmetric_fit_of_two_modes_is_flagged_by_its_variance():
    """fullrank_vi on modes at (-4, 0) and (4, 0) fits one wide Gaussian: its means are
    right by symmetry and its k-hat passes, but its sd along the modes is 3.5-3.6 against
    the true 4.12 (measured, seeds 0 and 1): the variance the weights imply says so."""
    centre = jnp.array([4.0, 0.0])

    def log_density(x):
        return jnp.logaddexp(-0.5 * jnp.sum((x - centre) ** 2), -0.5 * jnp.sum((x + centre) ** 2))

    target = bw.Target.from_logdensity(log_density, dim=2, name="two_modes")
    with pytest.warns(UnreliableRunWarning, match="variance"):
        result = bw.sample(target, "fullrank_vi", seed=1, num_chains=4)
    assert "variance_shift" in _failed(result.diagnostics)
    assert "pareto_k" not in _failed(result.diagnostics)


def test_partial_run_is_flagged():
    x = np.random.default_rng(7).normal(size=(4, 500, 1))
    assert "complete" in _failed(diagnose(_chains(x), {}, partial=True))


def test_verdict_survives_save_and_load(tmp_path):
    result = bw.sample("gaussian", "nuts", seed=0, num_chains=2, num_samples=100, num_warmup=50)
    path = tmp_path / "run.nc"
    result.save(str(path))
    assert str(bw.load(str(path)).diagnostics) == str(result.diagnostics)


def test_runs_that_disagree_beyond_their_errors_fail_runs_agree():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(4, 1000, 3))
    agree = build_idata({"x": x}, x, {}, log_weights=np.zeros((4, 1000)))
    assert "runs_agree" not in _failed(diagnose(agree, {}))
    shifted = x + np.array([0.0, 0.5, 1.0, 1.5])[:, None, None]  # each run elsewhere
    disagree = build_idata({"x": shifted}, shifted, {}, log_weights=np.zeros((4, 1000)))
    assert "runs_agree" in _failed(diagnose(disagree, {}))


def test_family_variance_counts_copies_of_one_draw_once():
    # 200 families of 5 identical copies (a resampled population): the mean's variance
    # is sigma^2 / 200, not sigma^2 / 1000; over 400 replicates the estimators' means are
    # compared with the empirical variance of the means (its relative SE is
    # sqrt(2 / 399) = 7%, so 4 SE is 28%)
    rng = np.random.default_rng(9)
    family = np.repeat(np.arange(200), 5)
    w = np.full(1000, 1e-3)
    means, by_family, independent = [], [], []
    for _ in range(400):
        x = np.repeat(rng.normal(size=(200, 1)), 5, axis=0)
        means.append(w @ x)
        by_family.append(weighted_mean_variance(x, w, family))
        independent.append(weighted_mean_variance(x, w))
    empirical = np.var(np.asarray(means), ddof=1)
    assert abs(np.mean(by_family) / empirical - 1) < 4 * np.sqrt(2 / 399)
    assert np.mean(independent) / empirical < 0.3


def test_smc_records_families_and_runs_agree_uses_them():
    result = bw.sample("gaussian", "smc", seed=0, num_chains=2, num_samples=256)
    family = result.idata.sample_stats["family"].values
    assert family.shape == (2, 256) and family.min() >= 0 and family.max() < 256
    # resampling made families of several particles
    assert len(np.unique(family[0])) < 256
    assert "runs_agree" in {check.name for check in result.diagnostics.checks}


def test_a_density_peak_no_draw_entered_is_flagged():
    # default smc never enters Neal's funnel's neck, where the density peaks (about 94
    # nats above its best particle); every other check passes on such a run
    with pytest.warns(UnreliableRunWarning, match="density"):
        result = bw.sample("funnel", "smc", seed=0, num_chains=2, num_samples=512)
    assert "density_peak" in _failed(result.diagnostics)
    # what to try names smc's own remedy, the local-scale move with more sweeps
    assert "move='local_hmc'" in str(result.diagnostics)
    # the wide starts of the unvisited_mode search climb into the same neck (where the
    # climbs from the best particles end): one region, not another mode
    assert "unvisited_mode" not in _failed(result.diagnostics)
    # the healthy run of a log-concave target is within d + sqrt(d) of its peak
    healthy = bw.sample("gaussian", "nuts", seed=0, num_chains=2, num_samples=200)
    peak = [c for c in healthy.diagnostics.checks if c.name == "density_peak"]
    assert len(peak) == 1 and peak[0].ok


@pytest.mark.parametrize(
    ("config", "names_local_hmc", "names_sweeps"),
    [
        ({"move": "mala", "max_mcmc_steps": 20}, True, True),  # smc, ais: their own remedy
        ({"move": "local_hmc", "max_mcmc_steps": 20}, False, True),  # already local: sweeps
        ({"move": "local_hmc", "max_mcmc_steps": 20, "precondition": False}, False, True),
        ({"move": "ula", "max_mcmc_steps": 20}, False, False),  # smc_langevin: no such move
        ({"max_num_doublings": 10}, False, False),  # nuts
    ],
)
def test_an_unentered_peak_advises_what_the_sampler_can_do(config, names_local_hmc, names_sweeps):
    """An MCMC move's advice names local_hmc, sweeps and, unless already so, unwhitened
    coordinates."""
    positions = np.random.default_rng(0).normal(size=(2, 100, 2))
    idata = _chains(positions)
    idata.unconstrained_posterior.attrs.update({PEAK_ATTRIBUTE: 100.0, BEST_DRAW_ATTRIBUTE: 0.0})
    (peak,) = [c for c in diagnose(idata, config, markov=False).checks if c.name == "density_peak"]
    assert not peak.ok
    assert ("move='local_hmc'" in peak.advice) is names_local_hmc
    assert ("num_mcmc_steps" in peak.advice) is names_sweeps
    unwhitened = names_sweeps and config.get("precondition") is not False
    assert ("precondition=False" in peak.advice) is unwhitened
    assert "adapts to local scales" in peak.advice


def _two_modes(separation=12.0, dim=2):
    """An equal mixture of N(0, I) and N(separation e_1, I) in ``dim`` dimensions:
    log Z = 0."""
    means = np.zeros((2, dim))
    means[1, 0] = separation
    return mixture_target("two_modes", means, 1.0, {}, "two modes")


def test_a_mode_no_draw_visited_is_flagged():
    """Full-rank VI started near the origin fits the mode there in every run (the runs
    agree, k-hat and the importance shift pass: the verdict said "fine" before this
    check); the peak at (12, 0), climbed from the probe's wide starts, is as high as the
    best draw and 8.5 draw sds away. smc visits both modes and passes."""
    target = _two_modes()
    collapsed = bw.sample(target, "fullrank_vi", seed=0, num_chains=2, num_samples=500)
    assert _failed(collapsed.diagnostics) == {"unvisited_mode"}
    both = bw.sample(target, "smc", seed=0, num_chains=2, num_samples=512)
    assert both.diagnostics.ok, both.diagnostics
    assert np.mean(both.positions[..., 0] > 6) == pytest.approx(0.5, abs=0.1)


def test_a_mode_apart_in_one_coordinate_of_ten_is_flagged():
    """The modes 10 apart in 10-d: every NUTS chain stays at the origin. The far peak is
    only about 2 draw sds from the nearest draw in root mean square over coordinates (the
    old test wanted 5, and the verdict said "fine") but 6.5 beyond every draw along its
    line from the draws' mean."""
    target = _two_modes(separation=10.0, dim=10)
    with pytest.warns(UnreliableRunWarning, match="a mode the run never visited"):
        stuck = bw.sample(target, "nuts", seed=0, num_chains=4, num_samples=500, num_warmup=500)
    assert np.all(stuck.positions[..., 0] < 5.0)  # the failure is still there
    assert _failed(stuck.diagnostics) == {"unvisited_mode"}


def test_a_mode_beyond_the_automatic_reference_is_flagged_and_the_advice_finds_it():
    """With the modes 35 apart, the ray probe behind smc's automatic reference passes
    between the far mode's radii (32 and 45): the pilot never reaches it, and the run
    puts every particle in the near mode, log Z off by log 2. Before the wider starts of
    the peak search (4 and 16 times the probe's scale) the verdict said "fine". The
    advised reference_scale (from the far peak's distance) finds both modes."""
    target = _two_modes(separation=35.0)
    with pytest.warns(UnreliableRunWarning, match="a mode the run never visited"):
        missed = bw.sample(target, "smc", seed=0, num_chains=4, num_samples=512)
    assert np.mean(missed.positions[..., 0] > 17.5) == 0.0  # the failure is still there
    assert _failed(missed.diagnostics) == {"unvisited_mode"}
    (check,) = missed.diagnostics.failed
    radius = missed.idata.unconstrained_posterior.attrs["unvisited_peak_radius"]
    assert radius == pytest.approx(35.0, abs=0.1)
    scale = scale_for_reach(radius, 2)
    assert f"a fixed reference_scale={scale:.3g}" in check.advice
    found = bw.sample(
        target, "smc", seed=0, num_chains=4, num_samples=512, reference_scale=round(scale)
    )
    assert found.diagnostics.ok, found.diagnostics
    assert abs(found.log_z - target.log_z) < 3 * found.log_z_se
    # both modes hold weight (log Z within 3 SE already says it is about half each)
    far = found.positions[..., 0] > 17.5
    weights = np.exp(found.log_weights - np.max(found.log_weights))
    assert 0.25 < np.sum(weights * far) / np.sum(weights) < 0.75


def test_finite_fires_on_non_finite_positions_weights_and_log_z():
    rng = np.random.default_rng(0)
    positions = rng.normal(size=(4, 500, 2))
    assert "finite" not in _failed(diagnose(_chains(positions), {}))
    positions[1, 7, 0] = np.nan
    assert "finite" in _failed(diagnose(_chains(positions), {}))
    clean = rng.normal(size=(2, 400, 2))
    log_w = np.zeros((2, 400))
    log_w[0] = -np.inf  # a run in which every weight is zero
    weighted = build_idata({"x": clean}, clean, {"log_weight": log_w})
    assert "finite" in _failed(diagnose(weighted, {}))


@pytest.mark.parametrize(
    ("sampler", "region"),
    [("smc_langevin", "nan where |x0| > 3"), ("smc", "+inf where x0 > 2")],
)
def test_a_density_nan_or_infinite_where_the_run_goes_is_flagged(sampler, region):
    """The reproductions of the issue: these runs returned NaN output with no word."""
    import jax.numpy as jnp

    def log_density(x):
        base = -0.5 * x @ x
        if region.startswith("nan"):
            return jnp.where(jnp.abs(x[0]) > 3, jnp.nan, base)
        return jnp.where(x[0] > 2, jnp.inf, base)

    target = bw.Target.from_logdensity(log_density, dim=3, name="broken")
    # smc_langevin's default step (tuned on the particles it moves worst) rarely reaches
    # the NaN region; a fixed step of 0.5 (whitened) sends particles there
    options = {"adapt_step_size": False, "step_size": 0.5} if sampler == "smc_langevin" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableRunWarning)
        result = bw.sample(target, sampler, num_chains=2, num_samples=400, **options)
    log_weights = np.asarray(result.log_weights)  # -inf is a weight of zero, NaN is not
    escaped = not (
        np.all(np.isfinite(result.positions))
        and np.isfinite(result.log_z)
        and not np.any(np.isnan(log_weights) | (log_weights == np.inf))
    )
    # non-finite output is always flagged; a +inf density has no right answer at all
    if escaped or region.startswith("+inf"):
        assert not result.diagnostics.ok, str(result.diagnostics)
    if escaped:
        assert "finite" in _failed(result.diagnostics), str(result.diagnostics)
    if sampler == "smc_langevin":  # a NaN weight is a zero weight, so no NaN escapes
        assert not escaped and "support" in _failed(result.diagnostics)


def _cut_normal(value):
    """A standard normal in 2-d whose density is ``value`` (NaN or -inf) where x0 > 2."""
    import jax.numpy as jnp

    def log_density(x):
        return jnp.where(x[0] > 2, value, -0.5 * x @ x)

    return bw.Target.from_logdensity(log_density, dim=2, name="cut_normal")


@pytest.mark.parametrize("value", [float("nan"), -float("inf")])
def test_unadjusted_moves_out_of_the_support_fail_support_and_adjusted_ones_do_not(value):
    """smc_langevin's Gaussian backward kernel puts mass where the density is zero, so its
    log Z is biased (about -0.16 here, at a fixed step of 0.5 in whitened units); smc's
    Metropolis moves reject such proposals. (At smc_langevin's default step, tuned on
    the particles it moves worst, the moves killed about 0.01 of the mass, within the
    SE of 0.025, and the check passed: measured when written.)"""
    from scipy.stats import norm

    target = _cut_normal(value)
    true_log_z = np.log(2 * np.pi * norm.cdf(2.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableRunWarning)
        langevin = bw.sample(
            target, "smc_langevin", num_chains=4, num_samples=400, adapt_step_size=False,
            step_size=0.5,
        )  # fmt: skip
        adjusted = bw.sample(target, "smc", num_chains=4, num_samples=400)
    for result in (langevin, adjusted):
        assert np.all(np.isfinite(result.positions)) and np.isfinite(result.log_z)
    assert "support" in _failed(langevin.diagnostics), str(langevin.diagnostics)
    assert "support" not in {check.name for check in adjusted.diagnostics.checks}
    # smc is right within 4 of its standard errors (two-sided, 6e-5 false alarms)
    assert abs(adjusted.log_z - true_log_z) < 4 * adjusted.log_z_se
