"""snf: exact log-determinants of every flow block, exact path weights (forward and
backward) on a Gaussian in standard errors, training lowers the path KL, exact cost."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_z_scores, perturbed

import bayeswb as bw
from bayeswb.core.result import combine_log_z
from bayeswb.samplers.flows.snf import (
    SNFConfig,
    initial_snf,
    reverse_path_kl_loss,
    snf_cost,
    train_snf,
)
from bayeswb.samplers.flows.snf_paths import (
    SNF_FLOW_TYPES,
    backward_path,
    forward_path,
    make_snf,
    sample_paths,
)


@pytest.mark.parametrize("flow_type", SNF_FLOW_TYPES)
def test_every_block_log_det_matches_jacobian(flow_type):
    # float64, so that 1e-8 is ~10^7 epsilons: the check is limited by the determinant
    # formula, not by rounding. Forward-mode jacobian (jacfwd): reverse mode of flowjax's
    # spline coupling segfaults in this jaxlib build (see tests/samplers/test_flows.py)
    with jax.enable_x64(True):
        snf = make_snf(
            jax.random.key(0), 3, flow_type, num_blocks=2, hidden_width=8, spline_interval=3.0
        )
        blocks = perturbed(snf.blocks, jax.random.key(1), 0.3)
        params, static = eqx.partition(blocks, eqx.is_array)
        points = jax.random.normal(jax.random.key(2), (4, 3), dtype=jnp.float64)

        @jax.jit
        def check(block_params, x):
            bijection = eqx.combine(block_params, static)
            y, log_det = bijection.transform_and_log_det(x)
            _, expected = jnp.linalg.slogdet(jax.jacfwd(bijection.transform)(x))
            x_back, inverse_log_det = bijection.inverse_and_log_det(y)
            return log_det, expected, x_back, inverse_log_det

        for k in range(snf.num_blocks):
            block = jax.tree.map(lambda leaf, k=k: leaf[k], params)
            log_det, expected, x_back, inverse_log_det = jax.vmap(check, in_axes=(None, 0))(
                block, points
            )
            np.testing.assert_allclose(log_det, expected, rtol=1e-8, atol=1e-8)
            np.testing.assert_allclose(x_back, points, rtol=1e-8, atol=1e-8)
            np.testing.assert_allclose(inverse_log_det, -expected, rtol=1e-8, atol=1e-8)
            assert np.ptp(np.asarray(log_det)) > 1e-3  # not volume preserving


# Gaussian with sds (0.71, 1) and base q0 = N(0, 0.85^2): both p/q and q/p have finite
# variance (0.71/sqrt(2) < 0.85 < sqrt(2) 0.71), so the forward and backward importance
# estimates below have a central limit theorem and their standard errors mean something
GAUSSIAN = {"dim": 2, "condition_number": 2.0}
BASE_SCALE = 0.85
STEP_SIZES = {"mala": 0.1, "ula": 0.05, "rwm": 0.4}


@pytest.mark.parametrize("kernel", ["mala", "ula", "rwm"])
def test_path_weights_are_exact_on_gaussian(kernel):
    target = bw.models.get("gaussian", **GAUSSIAN)
    sd = np.asarray(target.reference.sd["x"])
    snf = make_snf(
        jax.random.key(3),
        2,
        num_blocks=2,
        hidden_width=8,
        init_scale=BASE_SCALE,
        kernel=kernel,
        num_mcmc_steps=3,
        step_size=STEP_SIZES[kernel],
    )
    snf = eqx.tree_at(lambda s: s.blocks, snf, perturbed(snf.blocks, jax.random.key(4), 0.05))
    num_runs, num_paths = 8, 4000

    @jax.jit
    def one_run(key):
        forward_key, data_key, backward_key = jax.random.split(key, 3)
        x, log_w, _, _ = sample_paths(snf, target.log_density, forward_key, num_paths)
        data = target.sample_exact(data_key, num_paths)
        _, log_w_back = jax.vmap(backward_path, in_axes=(None, None, 0, 0))(
            snf, target.log_density, jax.random.split(backward_key, num_paths), data
        )
        return x, log_w, log_w_back

    x, log_w, log_w_back = jax.vmap(one_run)(jax.random.split(jax.random.key(5), num_runs))
    x, log_w, log_w_back = (np.asarray(a, dtype=np.float64) for a in (x, log_w, log_w_back))

    # forward: E_forward[w] = Z, so log mean w per run estimates log Z (eq. 5)
    log_z, log_z_se = combine_log_z(np.log(np.mean(np.exp(log_w), axis=1)))
    # backward: E_{p x backward kernels}[1 / w] = 1 / Z
    neg_log_z, neg_log_z_se = combine_log_z(np.log(np.mean(np.exp(-log_w_back), axis=1)))
    # self-normalised weighted moments, MCSE from the weights' Kish ESS
    w = np.exp(log_w.ravel() - log_w.max())
    w /= w.sum()
    ess = 1.0 / np.sum(w**2)
    flat = x.reshape(-1, 2)
    mean_z = (w @ flat) / (sd / np.sqrt(ess))
    var_z = (w @ flat**2 - sd**2) / (np.sqrt(2.0) * sd**2 / np.sqrt(ess))
    z = np.concatenate(
        [
            [(log_z - target.log_z) / log_z_se, (neg_log_z + target.log_z) / neg_log_z_se],
            mean_z,
            var_z,
        ]
    )
    assert ess > 0.3 * w.size, ess  # a usable proposal: the z-scores are meaningful
    assert_z_scores(z, f"snf[{kernel}] log Z (forward, backward), mean, variance")


def test_backward_path_inverts_forward_path_without_stochastic_blocks():
    target = bw.models.get("double_well")
    snf = make_snf(jax.random.key(6), 2, "spline_coupling", num_blocks=2, kernel="none")
    # a moderate perturbation: a larger one drives a spline knot towards the interval edge
    # with slopes of exp(-17), where float32 inversion loses the digits checked here
    snf = eqx.tree_at(lambda s: s.blocks, snf, perturbed(snf.blocks, jax.random.key(7), 0.1))
    z = jax.random.normal(jax.random.key(8), (2,))
    x, log_w, _, _ = forward_path(snf, target.log_density, jax.random.key(9), z)
    z_back, log_w_back = backward_path(snf, target.log_density, jax.random.key(10), x)
    np.testing.assert_allclose(z_back, z, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(log_w_back, log_w, rtol=1e-4, atol=1e-4)


def test_training_lowers_the_path_kl():
    target = bw.models.get("double_well")
    config = SNFConfig(
        num_warmup=150,
        num_blocks=2,
        hidden_width=16,
        stochastic="rwm",
        num_mcmc_steps=3,
        step_size=0.2,
        num_mc_samples=32,
        learning_rate=3e-3,
        init_scale=1.5,
    )
    init_key, _ = jax.random.split(jax.random.key(11))  # as train_snf splits its key
    untrained = initial_snf(init_key, target.dim, config)
    trained, trace = train_snf(jax.random.key(11), target, config)
    evaluate = reverse_path_kl_loss(target.log_density, 2000)

    @eqx.filter_jit
    def losses(snf):
        # four independent batches of 2000 paths: mean and standard error of the loss
        params, static = eqx.partition(snf, eqx.is_array)
        keys = jax.random.split(jax.random.key(12), 4)
        return jax.vmap(lambda k: evaluate(params, static, k)[0])(keys)

    before, after = np.asarray(losses(untrained)), np.asarray(losses(trained))
    assert trace["loss"].shape == (150,) and not np.any(np.asarray(trace["skipped"]))
    difference = before.mean() - after.mean()
    se = np.sqrt(before.var(ddof=1) / before.size + after.var(ddof=1) / after.size)
    assert difference > 3.0 * se, (before, after)


def test_registered_sampler_counts_cost_exactly_and_rejects_bad_options():
    options = dict(
        num_chains=2,
        num_samples=30,
        num_warmup=4,
        num_blocks=1,
        hidden_width=8,
        num_mcmc_steps=2,
        num_mc_samples=5,
        batch_size=7,
        objective="mixed",
        stochastic="ula",
    )
    result = bw.sample("double_well", "snf", seed=0, **options)
    # per path: 1 block x (entry + 2 proposals) + final = 4 evaluations, 3 ULA gradients;
    # training: 4 steps x (5 + 7) paths, each evaluation back-propagated
    train_paths = 4 * (5 + 7)
    assert result.cost["n_logdensity_evals"] == 2 * (train_paths + 30) * 4
    assert result.cost["n_grad_evals"] == 2 * (train_paths * (4 + 3) + 30 * 3)
    assert (result.cost["n_grad_evals"], result.cost["n_logdensity_evals"]) == snf_cost(
        SNFConfig(**options)
    )
    assert result.log_weights.shape == (2, 30) and result.log_z_se is not None
    assert {"loss", "elbo", "forward_loss"} <= set(result.idata.path_stats.data_vars)
    with pytest.raises(ValueError, match="stochastic"):
        bw.sample("double_well", "snf", stochastic="hmc")
    with pytest.raises(ValueError, match="sample_exact"):
        target = bw.Target.from_logdensity(lambda x: -x @ x, dim=2)
        bw.sample(target, "snf", objective="forward_kl", num_warmup=1, num_samples=2)


# --------------------------------------------------------------------------- the figure


def test_free_energy_profile_of_exact_samples_matches_the_exact_profile():
    # the profile machinery of the wu2020_double_well figure on exact draws: a bin holding
    # probability p has -log(count / (n h)) with sd sqrt((1 - p) / (n p)) (delta method)
    from bayeswb.figures.wu2020_double_well import EDGES, exact_profile, sampled_profile

    n = 400_000
    x1 = np.asarray(bw.models.get("double_well").sample_exact(jax.random.key(13), n))[:, 0]
    exact = exact_profile()
    estimate = sampled_profile(x1, None)
    p = np.exp(-exact) * np.diff(EDGES)
    use = n * p > 50  # bins where the normal approximation holds
    assert use.sum() >= 15  # the wells and their flanks (the barrier top is too rare)
    z = (estimate[use] - exact[use]) / np.sqrt((1.0 - p[use]) / (n * p[use]))
    assert_z_scores(z, "exact-sample free-energy profile")
    # equal log weights give the unweighted profile
    np.testing.assert_allclose(sampled_profile(x1, np.zeros(n)), estimate, rtol=1e-10)


@pytest.mark.slow
def test_wu2020_double_well_quick(tmp_path):
    from bayeswb.figures import wu2020_double_well as figure

    tables = figure.compute(quick=True, seed=0)
    assert {"results", "runs", "summary", "published"} <= set(tables)
    results, runs, published = tables["results"], tables["runs"], tables["published"]
    assert {"setting", "x1", "exact", "unweighted_mean", "reweighted_mean"} <= set(results)
    assert set(runs.setting) == set(figure.SETTINGS)
    assert list(published.columns) == ["setting", "metric", "ours", "published", "difference"]
    for column in ("bias_unweighted", "bias_reweighted", "ess_fraction", "log_z"):
        assert np.all(np.isfinite(runs[column])), column
    assert np.all(np.isfinite(published["ours"]))
    paths = figure.plot(tables, tmp_path)
    assert all(path.exists() and path.stat().st_size > 0 for path in paths)
