"""Flow samplers: exact log-determinants, log Z against the truth in standard errors,
mode coverage of flow_mcmc against MALA at equal cost, save/load, option checks."""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import bayeswb as bw
from bayeswb.samplers.flows import (
    FLOW_TYPES,
    INVERTIBLE_FLOW_TYPES,
    forward_kl_loss,
    importance_weights,
    load_flow,
    make_flow,
    save_flow,
    train_flow,
)

# |estimate - truth| / SE bound for log Z, as the issue states it (two-sided false-alarm
# rate 0.27% for a normal estimate)
LOG_Z_SE_BOUND = 3.0


def _perturbed(flow, key, size=0.3):
    # flowjax initialises coupling and autoregressive layers to the identity: move every
    # parameter so that the Jacobian check sees a non-trivial map
    params, static = eqx.partition(flow, eqx.is_inexact_array)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    leaves = [
        leaf + size * jax.random.normal(k, leaf.shape, leaf.dtype)
        for leaf, k in zip(leaves, keys, strict=True)
    ]
    return eqx.combine(jax.tree.unflatten(treedef, leaves), static)


@pytest.mark.parametrize("flow_type", FLOW_TYPES)
def test_log_det_matches_jacobian(flow_type):
    # float64 so that the comparison is limited by the determinant, not by rounding:
    # tolerance 1e-8 is ~10^7 float64 epsilons, far above accumulated rounding.
    # Forward-mode jax.jacfwd: reverse-mode jax.jacobian (jacrev) of the spline coupling
    # flow segfaults in this jax/jaxlib build (0.10.2, CPU), eager and jitted alike
    with jax.enable_x64(True):
        dim = 3
        flow = make_flow(
            jax.random.key(0),
            dim,
            flow_type,
            num_layers=3,
            hidden_width=8,
            num_knots=5,
            spline_interval=3.0,
            loc=jnp.array([0.5, -1.0, 2.0]),
            scale=jnp.array([2.0, 0.5, 1.5]),
        )
        bijection = _perturbed(flow, jax.random.key(1)).bijection
        points = jax.random.normal(jax.random.key(2), (4, dim), dtype=jnp.float64)

        @eqx.filter_jit
        def check(bijection, x):
            y, log_det = bijection.transform_and_log_det(x)
            _, expected = jnp.linalg.slogdet(jax.jacfwd(bijection.transform)(x))
            if flow_type not in INVERTIBLE_FLOW_TYPES:
                return log_det, expected, None
            x_back, inverse_log_det = bijection.inverse_and_log_det(y)
            _, expected_inverse = jnp.linalg.slogdet(jax.jacfwd(bijection.inverse)(y))
            return log_det, expected, (x_back, inverse_log_det, expected_inverse)

        log_det, expected, inverse = jax.vmap(check, in_axes=(None, 0))(bijection, points)
        np.testing.assert_allclose(log_det, expected, rtol=1e-8, atol=1e-8)
        assert np.ptp(np.asarray(log_det)) > 1e-3  # a non-trivial, non-volume-preserving map
        if inverse is not None:
            x_back, inverse_log_det, expected_inverse = inverse
            np.testing.assert_allclose(x_back, points, rtol=1e-8, atol=1e-8)
            np.testing.assert_allclose(inverse_log_det, expected_inverse, rtol=1e-8, atol=1e-8)
            np.testing.assert_allclose(inverse_log_det, -expected, rtol=1e-8, atol=1e-8)


def test_flow_is_log_z_on_gaussian_within_three_standard_errors():
    target = bw.models.get("gaussian", dim=3, condition_number=4.0)
    num_runs, steps, mc = 8, 200, 16
    result = bw.sample(
        target,
        "flow_is",
        seed=0,
        num_chains=num_runs,
        num_samples=400,
        num_warmup=steps,
        objective="mixed",
        num_layers=2,
        hidden_width=16,
        num_mc_samples=mc,
        learning_rate=3e-3,
    )
    assert result.log_z_se is not None and result.log_z_se > 0
    z = (result.log_z - target.log_z) / result.log_z_se
    assert abs(z) < LOG_Z_SE_BOUND, (result.log_z, result.log_z_se, target.log_z)
    # mixed objective: every step has a reverse-KL part with mc target gradients
    assert result.cost["n_grad_evals"] == num_runs * steps * mc
    assert result.cost["n_logdensity_evals"] == num_runs * (steps * mc + 400)
    per_run = result.idata.sample_stats["log_marginal_likelihood"]
    assert per_run.shape == (num_runs,)
    assert {"elbo", "forward_nll"} <= set(result.idata.path_stats.data_vars)


def test_flow_vi_elbo_is_a_lower_bound_and_weights_recover_log_z():
    target = bw.models.get("gaussian", dim=2, condition_number=4.0)
    result = bw.sample(
        target,
        "flow_vi",
        seed=1,
        num_chains=8,
        num_samples=400,
        num_warmup=200,
        flow_type="affine_coupling",
        stl_estimator=True,
        num_layers=2,
        hidden_width=16,
        num_mc_samples=16,
        learning_rate=3e-3,
    )
    # the ELBO bounds log Z from below for any q (Rezende and Mohamed 2015, eq. 3): its
    # per-step estimates over the last 50 steps of 8 runs cannot exceed log Z by more than
    # noise (SE from their spread; consecutive steps are nearly independent draws)
    elbo = result.idata.path_stats["elbo"].values[:, -50:].ravel()
    se = elbo.std(ddof=1) / np.sqrt(elbo.size)
    assert elbo.mean() - target.log_z < LOG_Z_SE_BOUND * se + 1e-6
    assert elbo[:8].mean() > result.idata.path_stats["elbo"].values[:, 0].mean()
    z = (result.log_z - target.log_z) / result.log_z_se
    assert abs(z) < LOG_Z_SE_BOUND, (result.log_z, result.log_z_se, target.log_z)
    assert result.cost["n_grad_evals"] == 8 * 200 * 16
    assert bw.summary(result)["ess_weights"].iloc[0] > 0.5 * 8 * 400


def _modes_visited(positions, means):
    flat = np.asarray(positions).reshape(-1, means.shape[1])
    nearest = np.argmin(((flat[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    return np.unique(nearest).size


def test_flow_mcmc_visits_every_gmm40_mode_where_mala_does_not():
    # chains start uniformly in the box the means are drawn from, fewer chains than
    # modes: a sampler that cannot jump between modes cannot visit them all
    target = bw.models.get("gmm40", dim=2)
    target = dataclasses.replace(
        target, init=lambda k: jax.random.uniform(k, (2,), minval=-40.0, maxval=40.0)
    )
    means = target.metadata["means"]
    num_chains = 32
    flow = bw.sample(
        target,
        "flow_mcmc",
        seed=0,
        num_chains=num_chains,
        num_samples=200,
        num_warmup=300,
        num_local_steps=5,
        buffer_size=32768,
    )
    budget = flow.cost["n_grad_evals"]
    per_chain = budget // num_chains - 1
    mala = bw.sample(
        target,
        "mala",
        seed=0,
        num_chains=num_chains,
        num_samples=per_chain // 2,
        num_warmup=per_chain - per_chain // 2,
    )
    assert mala.cost["n_grad_evals"] == budget
    flow_modes = _modes_visited(flow.positions, means)
    mala_modes = _modes_visited(mala.positions, means)
    assert flow_modes == 40, flow_modes
    assert mala_modes < 40, mala_modes
    assert budget == num_chains * (1 + 500 * 6)
    assert float(flow.idata.sample_stats["global_acceptance_rate"].mean()) > 0.0


def test_saved_flow_loads_with_identical_log_densities(tmp_path):
    target = bw.models.get("gaussian", dim=2, condition_number=4.0)
    flow = make_flow(jax.random.key(0), 2, "spline_coupling", num_layers=2, hidden_width=8)
    loss = forward_kl_loss(target.sample_exact, 64)
    train = eqx.filter_jit(lambda k, f: train_flow(k, f, loss, 30, optax.adam(1e-2)))
    trained, _, trace = train(jax.random.key(1), flow)
    assert not bool(trace["skipped"].any())
    path = str(tmp_path / "flow.eqx")
    save_flow(path, trained)
    like = make_flow(jax.random.key(7), 2, "spline_coupling", num_layers=2, hidden_width=8)
    loaded = load_flow(path, like)
    x = target.sample_exact(jax.random.key(3), 16)
    np.testing.assert_array_equal(loaded.log_prob(x), trained.log_prob(x))
    assert not np.array_equal(like.log_prob(x), trained.log_prob(x))


def test_non_finite_log_weights_get_weight_zero():
    flow = make_flow(jax.random.key(0), 2, "affine_coupling", num_layers=2, hidden_width=8)

    def half_nan(x):
        return jnp.where(x[0] > 0, -0.5 * x @ x, jnp.nan)

    positions, log_weights, lp, log_z = importance_weights(flow, half_nan, jax.random.key(1), 64)
    # draws with x0 <= 0 have a NaN density: weight zero and position replaced by 0
    bad = np.asarray(positions[:, 0] <= 0)
    assert bad.any() and (~bad).any()
    assert np.all(np.asarray(log_weights)[bad] == -np.inf)
    assert np.all(np.asarray(positions)[bad] == 0.0)
    assert np.all(np.isfinite(np.asarray(log_weights)[~bad]))
    assert np.isfinite(float(log_z))


@pytest.mark.parametrize(
    ("sampler", "options", "field"),
    [
        ("flow_vi", {"flow_type": "glow"}, "flow_type"),
        ("flow_vi", {"num_layers": 0}, "num_layers"),
        ("flow_vi", {"learning_rate": -1.0}, "learning_rate"),
        ("flow_vi", {"stl_estimator": "yes"}, "stl_estimator"),
        ("flow_vi", {"flow_type": "planar", "stl_estimator": True}, "stl_estimator"),
        ("flow_is", {"objective": "alpha_divergence"}, "objective"),
        ("flow_is", {"objective": "forward_kl", "flow_type": "planar"}, "objective"),
        ("flow_is", {"forward_weight": 1.5}, "forward_weight"),
        ("flow_is", {"flow_path": 3}, "flow_path"),
        ("flow_mcmc", {"flow_type": "planar"}, "flow_type"),
        ("flow_mcmc", {"num_local_steps": 0}, "num_local_steps"),
        ("flow_mcmc", {"buffer_size": 8}, "buffer_size"),
        ("flow_mcmc", {"target_acceptance_rate": 1.0}, "target_acceptance_rate"),
        ("flow_mcmc", {"broad_weight": 1.0}, "broad_weight"),
    ],
)
def test_bad_options_raise_value_error_naming_the_field(sampler, options, field):
    with pytest.raises(ValueError, match=field):
        bw.samplers.get(sampler).make_config(**options)


def test_forward_kl_without_exact_samples_is_an_error():
    target = bw.Target.from_logdensity(lambda x: -0.5 * x @ x, dim=2)
    with pytest.raises(ValueError, match="objective"):
        bw.sample(target, "flow_is", num_chains=1, num_samples=10, objective="forward_kl")


def test_flow_samplers_are_registered_in_the_flow_family():
    for name in ("flow_vi", "flow_is", "flow_mcmc"):
        assert bw.samplers.get(name).family == "flow"
