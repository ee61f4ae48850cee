"""The diffusion samplers pis, dds, gfn_tb, cmcd and scld: exact path weights for any
control, the trajectory-balance and segment weights equal to the simulated ones, exact cost
counts, and trained runs against exact log Z and moments."""

from __future__ import annotations

import equinox as eqx
import helpers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_z_scores, importance_z_scores
from scipy.stats import chi2 as scipy_chi2
from scipy.stats import t as student_t

import bayeswb as bw
from bayeswb.core.probe import probe_evaluations
from bayeswb.samplers.diffusion import Control, brownian_reference, ornstein_uhlenbeck_reference
from bayeswb.samplers.diffusion.annealed import (
    CMCD,
    CMCDConfig,
    CMCDModel,
    cmcd_simulate,
    probe_step,
)
from bayeswb.samplers.diffusion.balance import (
    GFN_TB,
    RANK_WEIGHT,
    SEARCH_LENGTH,
    GFNConfig,
    SearchChains,
    add_batch,
    balance_loss,
    bridge_paths,
    build_balanced,
    draw_entries,
    empty_buffer,
    forward_batch,
    local_search,
)
from bayeswb.samplers.diffusion.paths import explored, path_log_weights, simulate
from bayeswb.samplers.diffusion.samplers import (
    DDS,
    PIS,
    DiffusionConfig,
    diffusion_cost,
    train_model,
)
from bayeswb.samplers.diffusion.sequential import (
    SCLD,
    SCLDConfig,
    log_variance_loss,
    segment_log_weights,
    segment_simulate,
)
from bayeswb.samplers.flows import partition_flow

MEAN, SD, LOG_SCALE = np.array([0.3, -0.2]), np.array([0.8, 0.9]), 0.7


def scaled_gaussian(x):
    """``exp(LOG_SCALE)`` times the N(MEAN, diag SD^2) density, unnormalised: its Z is
    known, and its weights against N(0, I) have finite variance."""
    return LOG_SCALE - 0.5 * jnp.sum(((x - MEAN) / SD) ** 2)


LOG_Z = LOG_SCALE + 0.5 * np.sum(np.log(2 * np.pi * SD**2))


@pytest.mark.parametrize("langevin", [True, False])
def test_path_weights_are_unbiased_for_z_under_any_control(langevin):
    """E[w] = Z for any control (here a random one, 0.3 normals on every parameter), on
    both references: the weight's mean over 100000 paths against Z within its MCSE; and
    the weights trajectory balance recomputes at the fixed paths are the simulated ones."""
    num_paths, z_scores = 100_000, []
    for reference in (brownian_reference(10), ornstein_uhlenbeck_reference(10)):
        control = Control(jax.random.key(0), 2, 16, 2, langevin)
        control = helpers.perturbed(control, jax.random.key(1), 0.3)
        paths = eqx.filter_jit(simulate)(
            jax.random.key(2), control, scaled_gaussian, reference, num_paths, 2, True
        )
        w = np.exp(np.asarray(paths.log_weights, np.float64) - LOG_Z)
        z_scores.append((w.mean() - 1.0) / (w.std(ddof=1) / np.sqrt(num_paths)))
        # the control moves the paths: their weights are not those of the reference
        assert w.std() > 0.05
        recomputed = path_log_weights(
            control, reference, paths.positions, paths.scores, paths.terminal
        )
        np.testing.assert_allclose(recomputed, paths.log_weights, rtol=1e-4, atol=1e-4)
    assert_z_scores(np.array(z_scores), "path weights' mean against Z")


def test_cmcd_path_weights_are_unbiased_for_z_under_any_control_and_step():
    """CMCD's E[w] = Z for a random control and two steps (one small, one too large for
    the annealing to follow without the weights), over 100000 paths each."""
    num_paths, z_scores = 100_000, []
    for step in (0.05, 0.3):
        control = Control(jax.random.key(0), 2, 16, 2, False)
        model = CMCDModel(helpers.perturbed(control, jax.random.key(1), 0.3), jnp.log(step))
        config = CMCDConfig(num_steps=10)
        paths = eqx.filter_jit(cmcd_simulate)(
            jax.random.key(2), model, scaled_gaussian, config, num_paths, 2
        )
        w = np.exp(np.asarray(paths.log_weights, np.float64) - LOG_Z)
        z_scores.append((w.mean() - 1.0) / (w.std(ddof=1) / np.sqrt(num_paths)))
        assert w.std() > 0.05
    assert_z_scores(np.array(z_scores), "cmcd path weights' mean against Z")


def test_cmcd_probes_a_step_that_a_stiff_target_accepts():
    """The initial step is the largest tried (0.05) on N(0, I); on N(0, I / 100), whose
    unadjusted Langevin steps diverge above 2 / 100, it is below that bound, and not the
    smallest step of the grid."""
    step = probe_step(jax.random.key(0), lambda x: -0.5 * x @ x, 4, 0.05)
    assert float(step) == pytest.approx(0.05, rel=1e-6)
    step = float(probe_step(jax.random.key(0), lambda x: -50.0 * x @ x, 4, 0.05))
    assert 0.05 * 0.5**11 < step < 0.02


def test_untrained_samplers_are_their_reference_chains():
    """u = 0 before training: PIS's end is N(0, sigma^2 T) = N(0, I) and DDS's the OU
    chain's stationary N(0, I), so with pilot_steps=0 the draws are N(0, I) weighted by
    pi / N(0, I); the ends' moments over 40000 draws against N(0, I)."""
    for name in ("pis", "dds"):
        r = bw.sample(
            bw.Target.from_logdensity(scaled_gaussian, 2), name, seed=3, num_chains=4,
            num_samples=10_000, num_warmup=0, pilot_steps=0, num_steps=8, hidden_width=8,
        )  # fmt: skip
        x = np.asarray(r.positions, np.float64).reshape(-1, 2)
        lw = np.asarray(r.log_weights, np.float64).reshape(-1)
        lp = LOG_SCALE - 0.5 * np.sum(((x - MEAN) / SD) ** 2, axis=1)
        expected = lp - (-0.5 * np.sum(x**2, axis=1) - np.log(2 * np.pi))
        np.testing.assert_allclose(lw, expected, rtol=1e-4, atol=1e-4)
        n = x.shape[0]
        z = np.concatenate([x.mean(0) * np.sqrt(n), (np.mean(x**2, 0) - 1.0) / np.sqrt(2.0 / n)])
        assert_z_scores(z, f"untrained {name}: N(0, I) ends")


def test_explored_training_paths_are_weighted_under_the_model_chain():
    """Off-policy exploration: the behaviour chain's ends are wider (untrained control:
    variance 1 + 2^2 at extra sd 2, within MCSE), yet trajectory balance weighs its paths
    under the model's chain: with a random control, the batch's mean log weight equals
    the one computed here from the explored paths with the model's Euler steps
    ``N(x + dt u, dt)`` against Brownian ones ``N(x, dt)`` and the end's ``N(0, 1)``."""
    dim, n, k = 2, 2000, 10
    config = GFNConfig(num_steps=k, batch_size=n, hidden_width=8, langevin_control=False)
    untrained = build_balanced(jax.random.key(0), scaled_gaussian, dim, config)
    wide = explored(brownian_reference(k), 2.0)
    ends = simulate(jax.random.key(2), untrained.control, scaled_gaussian, wide, n, dim).ends
    z = (np.asarray(ends).var(axis=0) - 5.0) / (5.0 * np.sqrt(2.0 / n))
    assert_z_scores(z, "explored ends' variance")

    control = helpers.perturbed(untrained.control, jax.random.key(1), 0.3)
    model = eqx.tree_at(lambda m: m.control, untrained, control)
    params, static = partition_flow(model)
    reference = brownian_reference(k)
    batch, _ = forward_batch(jax.random.key(3), control, scaled_gaussian, reference, 2.0, n, dim)
    _, aux = eqx.filter_jit(balance_loss)(params, static, reference, (batch,))
    x = np.asarray(batch.positions, np.float64)  # (k + 1, n, dim)
    dt, times = 1.0 / k, np.arange(k) / k
    u = np.stack(
        [np.asarray(jax.vmap(control, (0, None, None))(x[i], times[i], None)) for i in range(k)]
    )
    steps = x[1:] - x[:-1]
    log_ratio = np.sum(-(steps**2) + (steps - dt * u) ** 2, axis=(0, 2)) / (2 * dt)
    ends = x[-1]
    log_w = np.asarray(jax.vmap(scaled_gaussian)(jnp.asarray(ends, jnp.float32)), np.float64)
    log_w += 0.5 * np.sum(ends**2, axis=1) + 0.5 * dim * np.log(2 * np.pi) + log_ratio
    np.testing.assert_allclose(aux["elbo"], log_w.mean(), rtol=1e-3, atol=1e-3)


def test_cost_counts_are_exact():
    """Gradients: per training path one per step with the Langevin control plus the end's
    (reverse KL), per draw one per step; densities add the pilot's, one per draw (cmcd,
    scld: none, their gradients include the end), and trajectory balance's end per
    training path."""
    config = DiffusionConfig(num_chains=2, num_samples=10, num_steps=5, batch_size=4)
    steps = jnp.array([3, 7])
    # the pilot's draws and its ray probe's points; its target.init draws evaluate nothing
    pilot = 2 * (300 * 64 + probe_evaluations())
    for method, per_path, end_grad in ((PIS, 5, 1), (DDS, 5, 1), (GFN_TB, 5, 0)):
        grads, evals = diffusion_cost(config, method, steps)
        assert int(grads) == 10 * 4 * (per_path + end_grad) + 20 * per_path
        assert int(evals) == int(grads) + 20 + pilot + (0 if end_grad else 10 * 4)
    probe = 2 * 64 * 13  # each run's step probe
    annealed = (
        (CMCD, CMCDConfig(**vars(config))),
        (SCLD, SCLDConfig(**vars(config), num_segments=5)),
    )
    for method, method_config in annealed:
        grads, evals = diffusion_cost(method_config, method, steps)
        # a drawn path's end is one of its K + 1 gradient points: no extra density
        assert int(grads) == 10 * 4 * 6 + 20 * 6 + probe and int(evals) == int(grads) + pilot
    # gfn_tb's local search: per step 4 chains x (2 iterations + their start) and 4
    # replayed paths x 5 steps, besides the 4 forward paths' 5 steps and end densities
    balanced = GFNConfig(**vars(config))
    grads, evals = diffusion_cost(balanced, GFN_TB, steps)
    assert int(grads) == 10 * (4 * 5 + 4 * 3 + 4 * 5) + 20 * 5
    assert int(evals) == int(grads) + 20 + pilot + 10 * 4
    plain = DiffusionConfig(num_chains=2, num_samples=10, langevin_control=False, pilot_steps=0)
    grads, evals = diffusion_cost(plain, PIS, steps)
    assert (int(grads), int(evals)) == (10 * 64, 10 * 64 + 20)


@pytest.mark.parametrize("name", ["scld", "gfn_tb"])
def test_counted_evaluations_equal_the_reported_cost(name):
    """Every target gradient and density of a run (pilot, step probe, training, draw),
    counted by the target itself, equals the run's report. For the samplers whose training
    holds its paths fixed: under reverse-mode differentiation through ``lax.scan`` (pis,
    dds and cmcd train through their paths) the counting callbacks do not run."""
    target, counts = helpers.counted_gaussian(2)
    config = bw.samplers.get(name).make_config(
        num_chains=1, num_samples=16, num_warmup=3, plateau_window=0, num_steps=4,
        batch_size=4, pilot_steps=2, hidden_width=8, progress_bar=False,
        **({"num_segments": 2} if name == "scld" else {}),
    )  # fmt: skip
    draws = bw.samplers.get(name).run(jax.random.key(0), target, config)
    jax.effects_barrier()
    assert int(draws.n_grad_evals) == counts["grad"] > 0
    assert int(draws.n_logdensity_evals) == counts["value"] + counts["grad"]


@pytest.mark.parametrize(
    "name", helpers.run_bound(["pis", "dds", "gfn_tb", "cmcd", "scld"], {"gfn_tb"})
)
def test_trained_runs_recover_log_z_and_moments(name):
    """Eight runs on a correlated 3-d Gaussian (pilot, short training): Z, the weighted
    mean and the variance against the truth within their MCSE (from each run's weights,
    valid as k-hat < 0.5); the cost is what the run reports of the steps it took."""
    target = bw.models.get("gaussian", dim=3, condition_number=4.0, rotation=0)
    r = bw.sample(
        target, name, seed=0, num_chains=8, num_samples=1000, num_warmup=300,
        num_steps=20, hidden_width=32, batch_size=32, pilot_steps=100,
    )  # fmt: skip
    assert (r.idata.path_stats["pareto_k"].values < 0.5).all()  # the SEs below hold
    if "resamplings" in r.idata.path_stats:  # and the weights are independent (scld)
        assert (r.idata.path_stats["resamplings"].values == 0).all()
    variance = np.asarray(target.reference.sd["x"]) ** 2
    z = importance_z_scores(r, np.zeros(3), variance, target.log_z)
    assert_z_scores(z, f"{name} on a 3-d Gaussian")
    steps = r.idata.path_stats["training_steps"].values.ravel()
    config = bw.samplers.get(name).make_config(
        num_chains=8, num_samples=1000, num_warmup=300, num_steps=20, hidden_width=32,
        batch_size=32, pilot_steps=100,
    )  # fmt: skip
    method = {"pis": PIS, "dds": DDS, "gfn_tb": GFN_TB, "cmcd": CMCD, "scld": SCLD}[name]
    grads, evals = diffusion_cost(config, method, jnp.asarray(steps))
    assert r.cost["n_grad_evals"] == int(grads)
    assert r.cost["n_logdensity_evals"] == int(evals)


GRID = np.stack(np.meshgrid(*[np.linspace(-0.8, 0.8, 5)] * 2), -1).reshape(-1, 2)


def narrow_grid(x):
    """25 equal modes of sd 0.05 on a grid of spacing 0.4, normalised (log Z = 0): gmm25
    as the pilot's whole-mixture whitening leaves it."""
    lp = -0.5 * jnp.sum(((x - GRID) / 0.05) ** 2, axis=1) - jnp.log(2 * jnp.pi * 0.05**2)
    return jax.nn.logsumexp(lp) - jnp.log(25.0)


@pytest.mark.production_codegen  # runs more than it compiles (tests/conftest.py)
def test_dds_trains_without_diverging_on_narrow_modes():
    """Two trainings of dds (400 steps, K = 100) on :func:`narrow_grid`: the loss never
    rises above its first step's, and 4000 paths' mean weight matches Z = 1 within its
    MCSE. Before the target's score came to be scaled by the schedule's alpha-bar (0 at
    the first step, where the gain is near 2), the first training diverged here (its
    loss rose from 91 to 2384), and both did in a script run without the tests'
    compiler flags (log Z 7.2 and 591 too low)."""
    config = DiffusionConfig(num_warmup=400, batch_size=64, plateau_window=0, progress_bar=False)
    z_scores, draw = [], eqx.filter_jit(DDS.simulate)
    for seed in range(2):
        model, trace = train_model(jax.random.key(seed), narrow_grid, 2, config, DDS)
        loss = np.asarray(trace["loss"])
        assert np.all(np.isfinite(loss)) and loss.max() <= loss[0], (loss[0], loss.max())
        paths = draw(jax.random.key(10 + seed), model, narrow_grid, config, 4000, 2)
        w = np.exp(np.asarray(paths.log_weights, np.float64))
        z_scores.append((w.mean() - 1.0) / (w.std(ddof=1) / np.sqrt(w.size)))
    assert_z_scores(np.array(z_scores), "dds's mean weight against Z on narrow modes")


@pytest.mark.parametrize(("name", "every"), [("cmcd", 1), ("scld", 5)])
def test_resampled_along_the_paths_recovers_log_z_and_moments(name, every):
    """cmcd's and scld's draws as SMC samplers over the trained kernels, here resampling
    at every chance but the last (``resample_ess=1``: after every step for cmcd, at the
    ends of scld's 4 segments of 5 steps), on a correlated 3-d Gaussian after short
    training (so that the weights differ): 32 independent runs, whose Z_r / Z
    (unbiased), weighted means and variances are checked against the truth by
    t-statistics across the runs (a resampled run's draws share ancestors, so its own
    weights give no standard error), Bonferroni over the 7 statistics."""
    target = bw.models.get("gaussian", dim=3, condition_number=4.0, rotation=0)
    runs, steps = 32, 20
    r = bw.sample(
        target, name, seed=0, num_chains=runs, num_samples=500, num_warmup=100,
        plateau_window=0, num_steps=steps, hidden_width=16, batch_size=32,
        pilot_steps=100, resample_ess=1.0, progress_bar=False,
    )  # fmt: skip
    path = r.idata.path_stats
    assert (path["resamplings"].values == steps // every - 1).all()
    assert (path["lowest_path_ess"].values < 500).all()  # the weights did differ
    log_w = np.asarray(r.log_weights, np.float64)
    x = np.asarray(r.positions, np.float64)
    w = np.exp(log_w - log_w.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    mean = np.einsum("rn,rnd->rd", w, x)
    variance = np.einsum("rn,rnd->rd", w, x**2)  # the mean is 0
    log_z = np.asarray(r.idata.sample_stats["log_marginal_likelihood"].values)
    ratio = np.exp(log_z - target.log_z)
    truth_var = np.asarray(target.reference.sd["x"]) ** 2
    per_run = np.column_stack([mean, variance, ratio.reshape(runs, 1)])
    truth = np.concatenate([np.zeros(3), truth_var, [1.0]])
    t = (per_run.mean(axis=0) - truth) / (per_run.std(axis=0, ddof=1) / np.sqrt(runs))
    bound = student_t.ppf(1.0 - helpers.FALSE_ALARM_RATE / (2 * t.size), runs - 1)
    assert (np.abs(t) < bound).all(), (np.round(t, 2), bound)


def test_scld_segment_weights_sum_to_the_path_weight_and_training_lowers_their_variance():
    """Without resampling, a path's segment log weights (recomputed at its fixed points
    from the control) add up to its simulated log weight, whatever the control; and 300
    steps of the log-variance loss on a 2-d Gaussian lower the segments' variance."""
    config = SCLDConfig(num_steps=12, num_segments=3, resample_ess=0.0, hidden_width=8)
    dim = 2
    model = SCLD.build(jax.random.key(0), scaled_gaussian, dim, config)
    # a control that is not zero: perturb every array leaf
    leaves, tree = jax.tree.flatten(eqx.filter(model, eqx.is_array))
    keys = jax.random.split(jax.random.key(1), len(leaves))
    noisy = [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys, strict=True)]
    model = eqx.combine(jax.tree.unflatten(tree, noisy), model)
    paths = segment_simulate(jax.random.key(2), model, scaled_gaussian, config, 64, dim, True)
    log_g = segment_log_weights(model, paths, config)
    assert log_g.shape == (3, 64)
    np.testing.assert_allclose(
        np.sum(log_g, axis=0) + 0.5 * dim * np.log(2 * np.pi), paths.log_weights, rtol=1e-4,
        atol=1e-3,
    )  # fmt: skip
    config = SCLDConfig(
        num_steps=12, num_segments=3, hidden_width=16, batch_size=64, num_warmup=300,
        plateau_window=0, progress_bar=False,
    )  # fmt: skip
    objective = log_variance_loss(SCLD, scaled_gaussian, config, dim)
    loss = eqx.filter_jit(lambda m, key: objective(*eqx.partition(m, eqx.is_array), key)[0])
    untrained = SCLD.build(jax.random.key(0), scaled_gaussian, dim, config)
    trained, _ = train_model(jax.random.key(0), scaled_gaussian, dim, config, SCLD)
    keys = jax.random.split(jax.random.key(3), 20)
    before = np.mean([loss(untrained, k) for k in keys])
    after = np.mean([loss(trained, k) for k in keys])
    assert after < 0.5 * before, (before, after)


def test_samplers_are_registered_in_the_flow_family():
    for name in ("pis", "dds", "gfn_tb", "cmcd", "scld"):
        assert bw.samplers.get(name).family == "flow"
    with pytest.raises(ValueError, match="num_steps"):
        bw.samplers.get("pis").make_config(num_steps=0)
    with pytest.raises(ValueError, match="log_z_learning_rate"):
        bw.samplers.get("gfn_tb").make_config(log_z_learning_rate=-1.0)


def test_bridge_paths_from_the_reference_end_have_the_reference_law():
    """Ends drawn from the Brownian reference's end N(0, I), taken back by the bridge:
    the paths are Brownian motion from 0, so x_k has variance k / K and the increments
    are uncorrelated with variance 1 / K (20000 paths, K = 5, 2-d; z-scores of each
    step's variance and of the covariance of successive increments)."""
    k, n, dim = 5, 20_000, 2
    ends = jax.random.normal(jax.random.key(0), (n, dim))
    x = np.asarray(bridge_paths(jax.random.key(1), brownian_reference(k), ends), np.float64)
    assert np.all(x[0] == 0.0) and np.array_equal(x[-1], np.asarray(ends, np.float64))
    steps = np.diff(x, axis=0)  # (k, n, dim)
    z = [(steps.var(axis=1) - 1 / k) / ((1 / k) * np.sqrt(2 / n))]
    products = steps[1:] * steps[:-1]
    z.append(products.mean(axis=1) / (products.std(axis=1) / np.sqrt(n)))
    assert_z_scores(np.concatenate([a.ravel() for a in z]), "bridge paths' increments")


def test_the_replay_buffer_keeps_its_entries_ranked_by_density():
    """After every one of 40 writes of 8 entries (a third of them empty, no density
    repeated) into a buffer of 64, ``order`` lists the filled entries by density from the
    highest down, then the empty ones; and draws follow the rank priority 1 / (k N + rank):
    the chi-square of 20000 draws' ranks against it, at the final buffer."""
    capacity, n = 64, 8
    write = jax.jit(add_batch)
    buffer = empty_buffer(capacity, 1)
    rng = np.random.default_rng(0)
    for _ in range(40):
        density = rng.normal(size=n)
        density[rng.random(n) < 1 / 3] = np.nan
        buffer = write(buffer, jnp.asarray(density[:, None]), jnp.asarray(density))
        lp, order = np.asarray(buffer.log_density), np.asarray(buffer.order)
        filled = int(np.sum(np.isfinite(lp)))
        assert sorted(order.tolist()) == list(range(capacity))
        assert np.array_equal(order[:filled], np.argsort(-lp, kind="stable")[:filled])
        assert not np.any(np.isfinite(lp[order[filled:]]))
    x, drawn = draw_entries(jax.random.key(0), buffer, 20_000)
    assert np.array_equal(np.asarray(x)[:, 0], np.asarray(drawn))  # positions match
    rank = np.searchsorted(np.sort(-lp[np.isfinite(lp)]), -np.asarray(drawn))
    expected = 1 / (RANK_WEIGHT * filled + np.arange(filled))
    expected = 20_000 * expected / expected.sum()
    counts = np.bincount(rank, minlength=filled)
    assert counts.sum() == 20_000 and np.all(np.isfinite(drawn))
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    assert chi2 < scipy_chi2.isf(1e-3, filled - 1), chi2


def test_local_search_leaves_the_target_invariant():
    """MALA chains started from exact draws of N(MEAN, diag SD^2) (none due to restart)
    are still its draws after 20 iterations with the step adapted: z-scores of the mean
    and the variance over 20000 chains; the chains moved (acceptance well above 0)."""
    n, dim = 20_000, 2
    x = MEAN + SD * np.asarray(jax.random.normal(jax.random.key(0), (n, dim)))
    chains = SearchChains(
        jnp.asarray(x, jnp.float32),
        jax.vmap(scaled_gaussian)(jnp.asarray(x, jnp.float32)),
        jnp.zeros(n, int),
        jnp.log(jnp.asarray(0.5, jnp.float32)),
    )
    empty = empty_buffer(4, dim)
    search = eqx.filter_jit(local_search)  # iterations, a Python int, is static
    out, acceptance = search(jax.random.key(1), chains, scaled_gaussian, empty, iterations=20)
    y = np.asarray(out.positions, np.float64)
    assert 0.3 < float(acceptance) and np.all(np.asarray(out.age) == 20)
    assert np.mean(np.any(y != x, axis=1)) > 0.9
    z = np.concatenate(
        [(y.mean(0) - MEAN) / (SD / np.sqrt(n)), (y.var(0) - SD**2) / (SD**2 * np.sqrt(2 / n))]
    )
    assert_z_scores(z, "local search's draws")
    assert SEARCH_LENGTH > 20  # no chain restarted from the (empty) buffer
