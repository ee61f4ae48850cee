"""craft (continual repeated annealed flow transport): its objective finds the exact
transport, the cost counts are exact (counted by the target itself), and trained runs
recover exact log Z and moments."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import assert_annealed_runs_match, counted_gaussian

import bayeswb as bw
from bayeswb.samplers.flows.craft import (
    craft_cost,
    craft_loss,
    identity_transports,
    run_craft,
    smc_pass,
)
from bayeswb.samplers.flows.training import train_flow


def test_cost_counts_are_exact():
    """The target counts its own evaluations and gradients: a run without training
    costs what it reports; a training pass costs its forward pass, counted the same way,
    plus one gradient per particle and step (back-propagated through the transported
    density, which the forward pass already evaluated). (Callbacks inside a scan that is
    being differentiated do not run, so the pass is counted forward.)"""
    target, counts = counted_gaussian(2)
    config = bw.samplers.get("craft").make_config(
        num_chains=1, num_samples=16, num_warmup=0, pilot_steps=0, num_mc_samples=8,
        num_steps=3, progress_bar=False,
    )  # fmt: skip
    draws = run_craft(jax.random.key(0), target, config)
    jax.effects_barrier()
    assert int(draws.n_grad_evals) == counts["grad"] > 0
    assert int(draws.n_logdensity_evals) == counts["value"] + counts["grad"]

    counts.update(value=0, grad=0)
    params, static = eqx.partition(identity_transports(3, 2), eqx.is_inexact_array)
    jax.jit(craft_loss(target.log_density, config))(params, static, jax.random.key(1))
    jax.effects_barrier()
    (grads, evals), (grads_0, evals_0) = craft_cost(config, 1), craft_cost(config, 0)
    assert int(grads) - int(grads_0) == counts["grad"] + 8 * 3
    assert int(evals) - int(evals_0) == counts["value"] + counts["grad"]


def test_objective_finds_the_exact_transport():
    """One temperature from N(0, I) to N(m, diag s^2): the affine transport that is exact
    is ``x -> s x + m``, where every weight is equal; CRAFT's objective, trained, finds it
    (and the final pass's weights are then all equal)."""
    m, s = jnp.array([1.0, -0.5]), jnp.array([0.5, 2.0])
    log_p = lambda x: -0.5 * jnp.sum(((x - m) / s) ** 2)
    config = bw.samplers.get("craft").make_config(num_steps=1, num_mc_samples=256)
    transports, _, _ = train_flow(
        jax.random.key(0), identity_transports(1, 2), craft_loss(log_p, config), 600,
        optax.adam(0.02),
    )  # fmt: skip
    np.testing.assert_allclose(transports.shift[0], m, atol=0.05)
    np.testing.assert_allclose(jnp.exp(transports.log_scale[0]), s, rtol=0.05)
    out = smc_pass(jax.random.key(1), transports, log_p, config, 1000)
    assert float(out.path["ess"][0]) > 950


def test_trained_runs_recover_log_z_and_moments():
    """Eight runs on a correlated 3-d Gaussian (pilot, 200 training passes): Z, the
    weighted means and variances against the truth within their MCSE, from each run's
    weights (the SEs hold: the weights' ESS is most of the particles)."""
    target = bw.models.get("gaussian", dim=3, condition_number=4.0, rotation=0)
    r = bw.sample(
        target, "craft", seed=0, num_chains=8, num_samples=1000, num_warmup=200,
        progress_bar=False,
    )  # fmt: skip
    variance = np.asarray(target.reference.sd["x"]) ** 2
    assert_annealed_runs_match(r, np.zeros(3), variance, target.log_z, "craft on a 3-d Gaussian")


def test_untrained_transports_are_the_identity():
    transports = identity_transports(4, 3)
    leaves = jax.tree.leaves(eqx.filter(transports, eqx.is_inexact_array))
    assert all(float(jnp.abs(leaf).max()) == 0.0 for leaf in leaves)


def test_refuses_options_it_cannot_honour():
    craft = bw.samplers.get("craft")
    assert craft.family == "flow"
    with pytest.raises(ValueError, match="move"):
        craft.make_config(move="ula")
    with pytest.raises(ValueError, match="schedule"):
        craft.make_config(schedule="adaptive")
