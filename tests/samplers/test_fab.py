"""fab (flow annealed importance sampling bootstrap): the replay buffer's weights follow the
flow, the cost counts are exact (counted by the target itself), and trained runs recover
exact log Z and moments."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_annealed_runs_match, counted_gaussian

import bayeswb as bw
from bayeswb.samplers.flows import initial_flow, partition_flow, training_optimizer
from bayeswb.samplers.flows.fab import FABCarry, empty_buffer, fab_iteration, run_fab


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


def test_replay_buffer_weights_follow_the_flow():
    """Five iterations into a buffer of three runs (it wraps): each run enters with the raw
    AIS weights toward p^2/q (their mean is the run's estimate, the reported loss); an
    entry's log w + log q never changes; the entries just drawn carry the current flow's
    log q."""
    target = bw.models.get("gaussian", dim=2)
    config = bw.samplers.get("fab").make_config(
        num_mc_samples=16, buffer_runs=3, updates_per_ais=2, num_layers=2, init_scale=1.0,
        learning_rate=1e-2, progress_bar=False,
    )  # fmt: skip
    flow = initial_flow(jax.random.key(0), target, config, invert=True)
    params, static = partition_flow(flow)
    optimizer = training_optimizer(config)
    iteration = jax.jit(fab_iteration(target, config, static, optimizer, None))
    carry = FABCarry(params, optimizer.init(params), jnp.zeros(()), empty_buffer(48, 2))
    invariant = np.full(48, np.nan)
    for t in range(5):
        before = eqx.combine(carry.params, static)
        carry, record = iteration(carry, (jax.random.key(t), jnp.asarray(t)))
        buffer, slot = carry.buffer, slice((t % 3) * 16, (t % 3 + 1) * 16)
        kept = np.asarray(buffer.log_weights + buffer.log_q)
        inserted = kept[slot] - np.asarray(jax.vmap(before.log_prob)(buffer.positions[slot]))
        entry_mean = jax.nn.logsumexp(inserted) - math.log(16)
        np.testing.assert_allclose(entry_mean, record["loss"], rtol=1e-4, atol=1e-4)
        invariant[slot] = kept[slot]
        filled = ~np.isnan(invariant)
        np.testing.assert_allclose(kept[filled], invariant[filled], rtol=1e-5, atol=1e-5)
        now = jax.vmap(eqx.combine(carry.params, static).log_prob)(buffer.positions)
        current = np.isclose(buffer.log_q, now, rtol=1e-6, atol=1e-6)
        assert current[filled].any() and not current[filled].all()


@pytest.mark.production_codegen  # runs more than it compiles (tests/conftest.py)
def test_trained_runs_recover_log_z_and_moments():
    """Eight runs on a correlated 3-d Gaussian (pilot, 300 training steps): Z, the
    weighted means and variances against the truth within their MCSE, from each run's
    weights (the SEs hold: the weights' ESS is most of the particles)."""
    target = bw.models.get("gaussian", dim=3, condition_number=4.0, rotation=0)
    r = bw.sample(
        target, "fab", seed=0, num_chains=8, num_samples=1000, num_warmup=300, num_layers=4,
        progress_bar=False,
    )  # fmt: skip
    variance = np.asarray(target.reference.sd["x"]) ** 2
    assert_annealed_runs_match(r, np.zeros(3), variance, target.log_z, "fab on a 3-d Gaussian")


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
