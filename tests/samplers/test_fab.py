"""fab (flow annealed importance sampling bootstrap): the training gradient is the alpha = 2
divergence's, the cost counts are exact (counted by the target itself), and trained runs
recover exact log Z and moments."""

from __future__ import annotations

import functools
import math
import types

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_z_scores, importance_z_scores
from jax.experimental import io_callback

import bayeswb as bw
from bayeswb.samplers.flows import make_flow, partition_flow
from bayeswb.samplers.flows.fab import fab_loss, run_fab


def counted_gaussian(dim):
    """N(0, I) whose log density counts its own evaluations and gradients on the host."""
    counts = {"value": 0, "grad": 0}

    def bump(kind, one):
        counts[kind] += int(np.size(one))

    def base(x):
        return -0.5 * jnp.sum(x**2)

    def one(x):
        # depends on x, so that under vmap the callback sees one entry per point
        return (x[0] * 0.0 + 1.0).astype(jnp.int32)

    @jax.custom_vjp
    def log_density(x):
        io_callback(functools.partial(bump, "value"), None, one(x))
        return base(x)

    def forward(x):
        io_callback(functools.partial(bump, "grad"), None, one(x))
        return jax.value_and_grad(base)(x)

    log_density.defvjp(forward, lambda grad, g: (g * grad,))
    return bw.Target.from_logdensity(log_density, dim=dim, name="counted"), counts


def test_cost_counts_are_exact():
    """Every target evaluation and gradient of a run, training and final AIS, counted by
    the target itself, equals the run's report (one run: a batched loop would also run
    the callbacks of finished lanes; the sampler alone, not bw.sample's diagnostics)."""
    target, counts = counted_gaussian(2)
    config = bw.samplers.get("fab").make_config(
        num_chains=1, num_samples=16, num_warmup=3, plateau_window=0, init_scale=1.0,
        num_mc_samples=8, num_steps=3, num_layers=2, progress_bar=False,
    )  # fmt: skip
    draws = run_fab(jax.random.key(0), target, config)
    jax.effects_barrier()
    assert int(draws.n_grad_evals) == counts["grad"] > 0
    # a gradient evaluation also gives the value
    assert int(draws.n_logdensity_evals) == counts["value"] + counts["grad"]


def test_training_gradient_is_minus_the_weighted_score_under_p2_over_q():
    """With one temperature and no move, the AIS weights are plain importance weights of
    p^2/q against q; the loss's gradient is then exactly ``-sum_i wbar_i grad log q(x_i)``
    at q's own draws, and its value the log mean weight."""
    dim = 2
    flow = make_flow(jax.random.key(0), dim, "affine_coupling", num_layers=2)
    target = bw.models.get("gaussian", dim=dim)
    config = bw.samplers.get("fab").make_config(
        num_steps=1, num_mcmc_steps=1, num_mc_samples=16, step_size=1e-12, adapt_step_size=False,
        precondition=False,
    )  # fmt: skip
    loss = fab_loss(target, config)
    params, static = partition_flow(flow)
    key = jax.random.key(1)
    (value, _), grads = eqx.filter_value_and_grad(loss, has_aux=True)(params, static, key)
    # the same draws: the AIS's initial ones (an HMC step of size 1e-12 keeps them)
    from bayeswb.samplers.flows.fab import training_ais
    from bayeswb.samplers.flows.smc_flow import flow_reference
    from bayeswb.samplers.smc import anneal

    parts, step_size = training_ais(target, config)
    fixed = eqx.combine(params, static)
    out = anneal(
        key, lambda x: 2 * target.log_density(x) - fixed.log_prob(x), flow_reference(fixed),
        16, parts, num_steps=1, step_size=1e-12,
    )  # fmt: skip
    x = out.positions
    log_w = jax.vmap(lambda x: 2 * target.log_density(x) - 2 * fixed.log_prob(x))(x)
    np.testing.assert_allclose(value, jax.nn.logsumexp(log_w) - math.log(16), rtol=1e-4)
    wbar = jax.nn.softmax(log_w)

    def weighted_score(params):
        q = eqx.combine(params, static)
        return -jnp.sum(wbar * jax.vmap(q.log_prob)(x))

    expected = jax.grad(weighted_score)(params)
    for g, e in zip(jax.tree.leaves(grads), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-3, atol=1e-5)


def test_trained_runs_recover_log_z_and_moments():
    """Eight runs on a correlated 3-d Gaussian (pilot, 300 training steps): Z, the
    weighted means and variances against the truth within their MCSE, from each run's
    weights (the SEs hold: the weights' ESS is most of the particles)."""
    target = bw.models.get("gaussian", dim=3, condition_number=4.0, rotation=0)
    r = bw.sample(
        target, "fab", seed=0, num_chains=8, num_samples=1000, num_warmup=300, num_layers=4,
        progress_bar=False,
    )  # fmt: skip
    log_w = np.asarray(r.log_weights, np.float64)
    w = np.exp(log_w - log_w.max(axis=1, keepdims=True))
    assert (w.sum(1) ** 2 / (w**2).sum(1) > 0.5 * w.shape[1]).all()
    # the SMC family's weights sum to each run's Z: as raw importance weights, times n
    raw = types.SimpleNamespace(log_weights=log_w + math.log(w.shape[1]), positions=r.positions)
    variance = np.asarray(target.reference.sd["x"]) ** 2
    z = importance_z_scores(raw, np.zeros(3), variance, target.log_z)
    assert_z_scores(z, "fab on a 3-d Gaussian")


def test_refuses_options_it_cannot_honour():
    fab = bw.samplers.get("fab")
    assert fab.family == "flow"
    with pytest.raises(ValueError, match="flow_type"):
        fab.make_config(flow_type="planar")
    with pytest.raises(ValueError, match="move"):
        fab.make_config(move="ula")
    with pytest.raises(ValueError, match="schedule"):
        fab.make_config(schedule="adaptive")
    with pytest.raises(ValueError, match="psis"):
        fab.make_config(psis=True)
