"""Statistical tests of the SMC family (smc, ais, smc_langevin) against exact answers.

Standard errors are across independent runs (``num_chains`` runs of ``num_samples``
particles): within a run, resampled and moved particles are correlated, so a per-particle
MCSE would be too small. Bounds come from ``helpers`` (family-wise false-alarm rate
1e-3); the log Z checks use the issue's stricter 3 standard errors. Seeds are fixed.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import across_run_z_scores, assert_z_scores

import bayeswb as bw
from bayeswb.samplers.smc import RESAMPLING_SCHEMES, Move, fixed_schedule, ula_transport

RUNS = 32
PARTICLES = 256
FIT_PARTICLES = 64
# one Target object for the module: bw.sample's compile cache is keyed on its identity
GAUSSIAN = bw.models.get("gaussian", dim=4, condition_number=10.0)

CONFIGS = {
    "smc_mala": ("smc", {}),
    "smc_hmc_residual": (
        "smc",
        {"move": "hmc", "resampling": "residual", "fit_reference_particles": FIT_PARTICLES},
    ),
    "smc_kinetic_langevin": ("smc", {"move": "kinetic_langevin", "resampling": "stratified"}),
    "smc_rwm_waste_free": ("smc", {"move": "rwm", "waste_free_chains": 32}),
    # GIST step sizes and a heavy-tailed reference, unwhitened: exact only if the move's
    # p(h | x') / p(h | x) factor and the t density's normaliser are right
    "smc_local_hmc_student_t": (
        "smc",
        {"move": "local_hmc", "reference_dof": 4.0, "reference_scale": 2.0, "precondition": False},
    ),
    # the automatic reference (probed, then fitted to a pilot) as a Student-t: exact only
    # if the fitted t's location, scale and normaliser are right
    "smc_auto_student_t": ("smc", {"reference_dof": 5.0}),
    "ais": ("ais", {"num_steps": 30}),
    "smc_langevin": ("smc_langevin", {}),
}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def gaussian_run(request):
    sampler, options = CONFIGS[request.param]
    result = bw.sample(
        GAUSSIAN, sampler, seed=11, num_chains=RUNS, num_samples=PARTICLES, **options
    )
    return request.param, result


def test_log_z_gaussian_within_three_standard_errors(gaussian_run):
    name, result = gaussian_run
    z = (result.log_z - GAUSSIAN.log_z) / result.log_z_se
    assert abs(z) < 3.0, f"{name}: log Z {result.log_z:.4f} vs {GAUSSIAN.log_z:.4f}, z = {z:.2f}"


def test_weighted_moments_gaussian(gaussian_run):
    name, result = gaussian_run
    sd = GAUSSIAN.reference.sd["x"]
    z = across_run_z_scores(result, np.zeros_like(sd), sd**2)
    assert_z_scores(z, f"{name}: weighted mean and variance")


def test_weights_path_and_cost(gaussian_run):
    name, result = gaussian_run
    sampler, options = CONFIGS[name]
    log_w = result.log_weights
    assert log_w.shape == (RUNS, PARTICLES) and not np.isnan(log_w).any()
    stats = result.idata.sample_stats
    np.testing.assert_allclose(
        stats["log_marginal_likelihood"].values,
        np.log(np.sum(np.exp(log_w), axis=1)),
        rtol=1e-4,
        atol=1e-4,
    )
    path = result.idata.path_stats
    temperature = path["temperature"].values
    steps = np.isfinite(temperature).sum(axis=1)
    for r in range(RUNS):
        t = temperature[r, : steps[r]]
        assert np.all(np.diff(t) > 0) and t[-1] == 1.0 and t[0] > 0
        # padding after the last step: NaN, and resampled False
        assert np.isnan(temperature[r, steps[r] :]).all()
        assert not path["resampled"].values[r, steps[r] :].any()
        assert np.isfinite(path["ess"].values[r, : steps[r]]).all()
    ess = path["ess"].values
    assert np.nanmax(ess) <= PARTICLES * (1 + 1e-5)
    acceptance = path["acceptance_rate"].values
    assert np.nanmin(acceptance) >= 0 and np.nanmax(acceptance) <= 1
    if sampler == "ais":
        assert not path["resampled"].values.any()
        # compiled and eager logspace may differ in the last bit
        np.testing.assert_allclose(
            temperature[0], np.asarray(fixed_schedule("geometric", 30))[1:], rtol=1e-6
        )
    if "waste_free_chains" not in options and sampler != "ais":
        # ESS-triggered: a step resamples exactly when its ESS is below half the particles
        below = ess[:, :] < 0.5 * PARTICLES
        np.testing.assert_array_equal(path["resampled"].values, below & np.isfinite(ess))
    total = int(steps.sum())
    sweeps = int(np.nansum(path["num_sweeps"].values))
    moved = options.get("waste_free_chains", PARTICLES)
    per_step = {
        "smc_mala": 1,
        "smc_hmc_residual": 5,
        "smc_local_hmc_student_t": 5,
        "smc_kinetic_langevin": 5,
        "smc_rwm_waste_free": 0,
    }
    grads_per_sweep = per_step.get(name, 1)
    grads_per_init = 0 if name == "smc_rwm_waste_free" else 1
    grads = moved * (total * grads_per_init + sweeps * grads_per_sweep)
    if sampler == "smc_langevin":
        # the tuning pilot (256 particles) took the steps and sweeps the main run replayed
        grads += 256 * (total + sweeps)
    if "reference_pilot_num_sweeps" in path:
        # each run's reference-fitting pilot (an MCMC move: mala for smc_langevin), by
        # default as large as the main run where it is the main run's first pass (smc,
        # not waste-free, its size not set), else two independent halves of
        # fit_reference_particles / 2 (512 by default; both halves' paths counted)
        first_pass = sampler == "smc" and not {
            "waste_free_chains",
            "fit_reference_particles",
        } & set(options)
        fit_n = PARTICLES if first_pass else options.get("fit_reference_particles", 512) // 2
        fit_steps = int(np.isfinite(path["reference_pilot_temperature"].values).sum())
        fit_sweeps = int(np.nansum(path["reference_pilot_num_sweeps"].values))
        if sampler == "smc_langevin":
            grads_per_init, grads_per_sweep = 1, 1
        grads += fit_n * (fit_steps * grads_per_init + fit_sweeps * grads_per_sweep)
    else:
        assert "reference_scale" in options, "the automatic reference fits one"
    assert result.cost["n_grad_evals"] == grads


@pytest.mark.parametrize("scheme", sorted(RESAMPLING_SCHEMES))
def test_resampling_is_unbiased(scheme):
    """E[offspring count of i] = N W_i: z-scores of the mean counts over many draws."""
    weights = jnp.array([0.3, 0.0, 0.05, 0.15, 1e-3, 0.2, 0.099, 0.2])
    weights = weights / weights.sum()
    n, draws = weights.shape[0], 20000
    resample = RESAMPLING_SCHEMES[scheme]
    keys = jax.random.split(jax.random.key(5), draws)
    ancestors = jax.vmap(lambda k: resample(k, weights, n))(keys)
    counts = np.asarray(jax.vmap(lambda a: jnp.bincount(a, length=n))(ancestors))
    assert (counts.sum(axis=1) == n).all()
    assert (counts[:, 1] == 0).all(), "a zero-weight particle was resampled"
    expected = n * np.asarray(weights, dtype=np.float64)
    random = counts.std(axis=0) > 0
    z = (counts.mean(axis=0) - expected)[random] / (
        counts.std(axis=0, ddof=1)[random] / math.sqrt(draws)
    )
    assert_z_scores(z, f"{scheme} offspring counts")


def test_nan_and_minus_inf_log_density_get_zero_weight():
    """Half-space target: NaN where x0 > 0 -> Z is half the Gaussian normaliser."""

    def log_density(x):
        return jnp.where(x[0] > 0, jnp.nan, -0.5 * x @ x)

    target = bw.Target.from_logdensity(
        log_density, dim=2, name="half_gaussian", log_z=math.log(0.5 * 2 * math.pi)
    )
    result = bw.sample(target, "smc", seed=3, num_chains=16, num_samples=256)
    log_w = result.log_weights
    assert not np.isnan(log_w).any() and np.isfinite(result.log_z)
    alive = np.isfinite(log_w)
    assert (result.positions[..., 0][alive] <= 0).all()
    z = (result.log_z - target.log_z) / result.log_z_se
    assert abs(z) < 3.0, f"log Z {result.log_z:.4f} vs {target.log_z:.4f}, z = {z:.2f}"


def test_all_particles_dead_gives_minus_inf_not_nan():
    """The sampler itself (bw.sample refuses a target whose density is not finite at its
    initial point, so the registered run function is called directly)."""
    target = bw.Target.from_logdensity(lambda x: jnp.nan * jnp.sum(x), dim=2, name="dead")
    spec = bw.samplers.get("smc")
    config = spec.make_config(num_chains=2, num_samples=16, num_steps=5)
    draws = spec.run(jax.random.key(0), target, config)
    assert np.all(np.asarray(draws.log_z) == -np.inf)
    assert not np.isnan(np.asarray(draws.log_weights)).any()


BAD_OPTIONS = [
    ("smc", "ess_threshold", 0.0),
    ("smc", "ess_threshold", 1.5),
    ("smc", "resampling", "bogus"),
    ("smc", "schedule", "cosine"),
    ("smc", "move", "nuts"),
    ("smc", "move", "ula"),
    ("smc", "target_conditional_ess", 1.0),
    ("smc", "num_steps", 0),
    ("smc", "reference_scale", -1.0),
    ("smc", "step_size", 0.0),
    ("smc", "target_acceptance_rate", 1.0),
    ("smc", "pilot_particles", -1),
    ("smc", "waste_free_chains", 3),
    ("smc", "num_mcmc_steps", 0),
    ("ais", "schedule", "bogus"),
    ("ais", "num_integration_steps", 0),
    ("smc_langevin", "move", "mala"),
    ("smc_langevin", "ess_threshold", -0.1),
    ("smc_langevin", "adapt_step_size", 1),
    # accepted and ignored before: the family has no warmup
    ("smc", "num_warmup", 500),
    ("ais", "num_warmup", 1),
]


@pytest.mark.parametrize(("sampler", "field", "value"), BAD_OPTIONS)
def test_bad_option_is_value_error_naming_field(sampler, field, value):
    spec = bw.samplers.get(sampler)
    with pytest.raises(ValueError, match=field):
        spec.make_config(num_samples=100, **{field: value})


def test_a_move_object_is_accepted():
    spec = bw.samplers.get("smc_langevin")
    move = ula_transport()
    assert isinstance(move, Move)
    assert spec.make_config(move=move).move is move
    with pytest.raises(ValueError, match="ess_threshold"):
        spec.make_config(move=move, ess_threshold=2)


@pytest.mark.slow
def test_funnel_log_z_and_weighted_moments():
    """Neal's funnel (dim 5, scale 1.5): log Z = 0 and exact moments.

    Settings: jittered HMC with a per-particle step size spread over two decades
    (``step_size_spread``; a mixture of pi-invariant kernels, so still exact), which takes
    small steps in the neck and large ones in the mouth, and a conditional ESS of 0.9 so
    the moves get enough temperatures (0.5 takes 3 steps). Whitened MALA with one global
    step size misses the neck (log Z -0.109, z = -4.35).

    Moments tested: mean and variance of v ~ N(0, scale^2) and of the standardised
    ``u_i = x_i exp(-v / 2) ~ N(0, 1)`` (independent of v), which checks the neck as much
    as x does. The raw second moment of x is not tested: x^2 has skewness ~90 here, so
    its across-run z-score is far from normal (with exact iid draws, 32 x 512, the
    Bonferroni bound of 10 z-scores is exceeded in 2% of repetitions, not 0.1%).
    """
    funnel = bw.models.get("funnel", dim=5, scale=1.5)
    result = bw.sample(
        funnel,
        "smc",
        seed=2,
        num_chains=RUNS,
        num_samples=512,
        reference_scale=2.0,
        move="hmc",
        num_integration_steps=10,
        num_mcmc_steps=10,
        step_size_spread=4.6,
        target_conditional_ess=0.9,
    )
    z_log_z = (result.log_z - funnel.log_z) / result.log_z_se
    assert abs(z_log_z) < 3.0, f"funnel log Z {result.log_z:.4f}, z = {z_log_z:.2f}"
    x = np.asarray(result.positions)
    v = x[..., :1]
    standardised = SimpleNamespace(
        positions=np.concatenate([v, x[..., 1:] * np.exp(-v / 2)], -1),
        log_weights=result.log_weights,
    )
    var = np.ones(5)
    var[0] = 1.5**2
    z = across_run_z_scores(standardised, np.zeros(5), var)
    assert_z_scores(z, "funnel weighted mean and variance of (v, u)")


@pytest.mark.slow
def test_sendera2024_logz_figure_quick(tmp_path):
    """The figure module's quick mode: tables with the protocol's columns, finite numbers,
    the published rows, and both plot files."""
    from bayeswb.figures import sendera2024_logz as figure

    tables = figure.compute(quick=True, seed=0)
    results, published = tables["results"], tables["published"]
    expected = {"target", "sampler", "abs_delta_log_z_mean", "abs_delta_log_z_se"}
    assert expected <= set(results.columns)
    numbers = ["abs_delta_log_z_mean", "pooled_error", "grad_evals_per_run", "sliced_wasserstein"]
    assert np.isfinite(results[numbers].to_numpy(dtype=float)).all()
    assert set(results["target"]) == set(figure.TARGETS)
    assert list(published.columns) == ["setting", "metric", "ours", "published", "difference"]
    smc = published[published["setting"].str.contains("our smc vs their SMC")]
    assert sorted(smc["published"]) == sorted(figure.PUBLISHED_SMC.values())
    # the budget curve: smc's tuned gmm25 cell again at a quarter of its particles, fewer
    # gradient evaluations; the published table keeps the full budgets alone (above)
    curve = results[(results["sampler"] == "smc") & (results["options"] == "tuned")]
    curve = curve[curve["target"] == "gmm25"].sort_values("budget_fraction")
    assert curve["budget_fraction"].tolist() == [0.25, 1.0]
    assert curve["particles"].tolist() == [32, 128]
    small, full = curve["grad_evals_per_run"]
    assert small < full
    paths = figure.plot(tables, tmp_path)
    assert all(path.exists() for path in paths) and {p.suffix for p in paths} == {".png", ".pdf"}


def test_a_diagonal_student_t_reference_is_a_normalised_t_and_reaches_every_reference():
    """The t_nu(mean, diag scale^2) reference integrates to one and has the t's variance
    scale^2 nu / (nu - 2); ``reference_dof`` reaches the automatic (probed and fitted)
    reference, which it once left Gaussian without a word."""
    from bayeswb.samplers.smc import diagonal_student_t_reference

    q = diagonal_student_t_reference(jnp.array([1.0]), jnp.array([2.0]), 10.0)
    grid = np.linspace(-400.0, 400.0, 400_001)
    density = np.exp(np.asarray(jax.vmap(q.log_prob)(jnp.asarray(grid)[:, None])))
    np.testing.assert_allclose(np.trapezoid(density, grid), 1.0, atol=1e-4)
    n = 200_000
    draws = np.asarray(q.sample(jax.random.key(0), n), dtype=np.float64)[:, 0]
    squares = (draws - 1.0) ** 2
    z_var = (squares.mean() - 4.0 * 10.0 / 8.0) / (squares.std(ddof=1) / math.sqrt(n))
    z_mean = (draws.mean() - 1.0) / (draws.std(ddof=1) / math.sqrt(n))
    assert_z_scores(np.array([z_mean, z_var]), "t_10(1, 2^2) draws")
    settings = dict(seed=0, num_chains=2, num_samples=64)
    gaussian = bw.sample(GAUSSIAN, "smc", **settings).log_weights
    student_t = bw.sample(GAUSSIAN, "smc", reference_dof=5.0, **settings).log_weights
    assert not np.allclose(gaussian, student_t)


def test_local_hmc_leaves_the_funnel_invariant():
    """Started from exact funnel draws (dim 3, scale 1.5: step scales vary ~20-fold), ten
    local_hmc transitions per chain must keep the law exact: z-scores of the mean and
    variance of v and of ``u_i = x_i exp(-v / 2)`` over 20000 independent chains. The
    GIST factor p(h | x') / p(h | x) is what makes it exact: dropping it from the
    acceptance gives |z| of 11 to 15 on the variances (checked when written)."""
    from bayeswb.samplers.smc import local_hmc_move

    funnel = bw.models.get("funnel", dim=3, scale=1.5)
    n = 20_000
    init_key, steps_key = jax.random.split(jax.random.key(5))
    move = local_hmc_move(5)
    states = jax.vmap(move.init, (0, None))(funnel.sample_exact(init_key, n), funnel.log_density)

    def one(states, key):
        step = jax.vmap(move.step, (0, 0, None, None))
        states, info = step(jax.random.split(key, n), states, funnel.log_density, 0.8)
        return states, jnp.mean(info.acceptance_rate)

    states, acceptance = jax.lax.scan(one, states, jax.random.split(steps_key, 10))
    assert 0.2 < float(jnp.mean(acceptance)) < 1.0  # the chains do move
    x = np.asarray(states.position, dtype=np.float64)
    y = np.concatenate([x[:, :1], x[:, 1:] * np.exp(-x[:, :1] / 2)], axis=1)
    var = np.array([1.5**2, 1.0, 1.0])
    z_mean = np.mean(y, 0) / (np.std(y, 0, ddof=1) / math.sqrt(n))
    squares = y**2
    z_var = (np.mean(squares, 0) - var) / (np.std(squares, 0, ddof=1) / math.sqrt(n))
    assert_z_scores(np.concatenate([z_mean, z_var]), "local_hmc from exact funnel draws")


@pytest.mark.parametrize("model", ["gmm25", "banana"])
def test_default_smc_is_right_without_settings(model):
    """Default smc (no options but runs, particles and seed) gets log Z within three
    across-run standard errors and the weighted means and variances within the
    family-wise bound, on targets the old default (N(0, I) reference, 5 MALA sweeps)
    failed: gmm25 (25 modes 5 apart on a grid: means 55 MCSE off, |delta log Z| 0.5 at
    4 x 1000) and banana (sd 10 along the bend: log Z z = -10, moments |z| 154 at these
    settings, measured when written)."""
    target = bw.models.get(model)
    mean = np.asarray(target.reference.mean["x"])
    var = np.asarray(target.reference.sd["x"]) ** 2
    result = bw.sample(target, "smc", seed=4, num_chains=16, num_samples=512)
    z = (result.log_z - target.log_z) / result.log_z_se
    assert abs(z) < 3.0, f"{model}: log Z {result.log_z:.4f}, z = {z:.2f}"
    assert_z_scores(across_run_z_scores(result, mean, var), f"{model}: default smc moments")


@pytest.mark.parametrize(
    ("sampler", "condition_number"),
    [("smc", 1e4), ("smc_langevin", 1e4)],
)
def test_defaults_are_right_on_a_correlated_gaussian(sampler, condition_number):
    """Default smc and smc_langevin on the registry's rotated 10-d Gaussian with covariance
    eigenvalues 1e-4 to 1, correlations up to near 1: log Z within three
    across-run standard errors, weighted means and variances within the family-wise bound.

    - smc: whitened by the particles' sd per coordinate (the default before), MALA's step
      was set by the narrowest direction and the particles hardly moved along the widest:
      sds 0.77-0.96 of the true ones (mean of 8 runs of 1000, seed 0) with a verdict of
      "fine"; whitened by their covariance once its correlations are badly conditioned,
      0.99-1.01. The runs of the old whitening varied so much that 16 of them do not
      always show its bias: here, under the tests' code generation, its largest |z| was
      2.9 (8.0 under a user's).
    - smc_langevin: its five unadjusted steps per temperature hardly move the particles,
      so they kept the shape of a reference fitted with the pilot's sds alone, their
      correlations never reached the whitening's gate, and their sds were 0.63-0.86 of the
      true ones (8 runs, seed 0) with a verdict of "fine" (here: |z| 4.4). The reference
      now carries the pilot's covariance where its correlations are badly conditioned
      (:func:`bayeswb.samplers.smc.annealing.fit_reference`): 0.97-1.06.

    :func:`test_smc_parts.test_covariance_whitening_decorrelates_and_inverts` checks the
    whitening itself."""
    target = bw.models.get("gaussian", dim=10, condition_number=condition_number, rotation=0)
    mean = np.asarray(target.reference.mean["x"])
    var = np.asarray(target.reference.sd["x"]) ** 2
    result = bw.sample(target, sampler, seed=4, num_chains=16)
    z = (result.log_z - target.log_z) / result.log_z_se
    assert abs(z) < 3.0, f"log Z {result.log_z:.4f}, z = {z:.2f}"
    assert_z_scores(across_run_z_scores(result, mean, var), f"default {sampler}, correlated")


def test_default_smc_langevin_is_right_on_a_curved_target():
    """Default smc_langevin on banana (sd 10 along the bend): log Z within three
    across-run standard errors, weighted means and variances within the family-wise
    bound. Its unadjusted step, retuned on the mean would-be acceptance, overshot in the
    banana's arms, where the curvature is highest: the draws' sds were 50% short with a
    verdict of "fine" (4 x 1000, seeds 0 and 1); here it failed with log Z z = -3.8, and
    retuned on the 5% quantile of the would-be acceptance with moments |z| 4.6 (measured
    when written). Retuned on the 1% quantile (the default) it passes."""
    target = bw.models.get("banana")
    mean = np.asarray(target.reference.mean["x"])
    var = np.asarray(target.reference.sd["x"]) ** 2
    result = bw.sample(target, "smc_langevin", seed=4, num_chains=16, num_samples=512)
    z = (result.log_z - target.log_z) / result.log_z_se
    assert abs(z) < 3.0, f"log Z {result.log_z:.4f}, z = {z:.2f}"
    assert_z_scores(across_run_z_scores(result, mean, var), "default smc_langevin moments")
