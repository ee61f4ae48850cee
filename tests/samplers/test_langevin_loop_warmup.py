"""A Langevin warmup run in the draws' loop (``langevin_chain_kernel(...,
warmup_in_loop=True)``) adapts exactly as the warmup that ``start`` runs on its own
(``run_warmup``).

The two differ only in the keys their steps draw with, so a kernel that ignores its key
makes them comparable step by step: the same step sizes and positions (which the
inverse mass matrix whitens), to float32 round-off (separately compiled programs).
Checked for both warmup kinds: the step dual-averaged to an acceptance rate, with Stan's
mass-matrix windows; and an unadjusted kernel's Metropolis-tested warmup with its
exploring phase and energy-rule step (the kernel's moves pass every test here; that the
draws are not tested is checked by ULA's closed-form bias in test_langevin.py).
"""

from __future__ import annotations

from typing import NamedTuple

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bayeswb as bw
from bayeswb.execution.kernel import run_whole
from bayeswb.samplers.langevin.chain_kernel import LangevinMethod, langevin_chain_kernel
from bayeswb.samplers.langevin.overdamped import MALAConfig, metropolis_trace
from bayeswb.samplers.langevin.warmup import (
    ENERGY_VARIANCE_TARGET,
    WarmupPlan,
    energy_variance_statistic,
    stay,
)

SD = jnp.array([0.3, 1.0, 4.0])
TARGET = bw.Target.from_logdensity(
    lambda x: -0.5 * jnp.sum((x / SD) ** 2),
    dim=3,
    name="scaled_gaussian",
    init=lambda key: jnp.array([1.0, -2.0, 3.0]),  # the same start whatever the key
)


class Info(NamedTuple):
    acceptance_rate: jax.Array
    energy_error: jax.Array
    diverging: jax.Array


def deterministic_kernel(key, state, logdensity_fn, step_size):
    """A Langevin-like move without noise (the key is unused): half a gradient step plus a
    rotation-like wobble, so that positions spread and the mass matrix has something to
    estimate; 'acceptance' and energy error are smooth functions of the move."""
    x = state.position
    y = x + step_size * state.logdensity_grad + 0.5 * jnp.sin(3.0 * x[::-1])
    new = blackjax.mala.init(y, logdensity_fn)
    size = jnp.sum((y - x) ** 2) * step_size
    # energy error <= 0: a Metropolis test passes every step, whatever its uniform draw
    info = Info(jnp.exp(-size), -size, jnp.asarray(False))
    return new, info


def adjusted(target, config):
    return LangevinMethod(
        init=lambda key, position, logdensity_fn: blackjax.mala.init(position, logdensity_fn),
        kernel=deterministic_kernel,
        trace=metropolis_trace,
        warmup=WarmupPlan(config.num_warmup, config.step_size, 0.6, None, True),
    )


def unadjusted(target, config):
    plan = WarmupPlan(
        config.num_warmup,
        config.step_size,
        ENERGY_VARIANCE_TARGET,
        None,
        True,
        energy_variance_statistic(target.dim, 1e-2),
        explore_acceptance_rate=0.6,
    )
    return adjusted(target, config)._replace(warmup=plan, warmup_test=stay)


@pytest.mark.parametrize("build", [adjusted, unadjusted], ids=["adjusted", "tested"])
def test_loop_warmup_adapts_as_the_start_warmup(build):
    config = MALAConfig(num_chains=2, num_samples=30, num_warmup=200, step_size=0.05)
    in_start = langevin_chain_kernel(build)
    in_loop = langevin_chain_kernel(build, warmup_in_loop=True)
    key = jax.random.key(3)
    a = run_whole(key, TARGET, config, in_start)
    b = run_whole(key, TARGET, config, in_loop)
    for one, other in [
        (a.warmup_positions, b.warmup_positions),
        (a.warmup_stats["step_size"], b.warmup_stats["step_size"]),
        (a.positions, b.positions),
        (a.stats["step_size"], b.stats["step_size"]),
    ]:
        np.testing.assert_allclose(one, other, rtol=1e-5, atol=1e-6)
    # the draws' step is the adapted one, not the initial 0.05
    assert abs(float(a.stats["step_size"][0, 0]) - 0.05) > 1e-3
    assert int(a.n_grad_evals) == int(b.n_grad_evals) == 2 * (1 + 200 + 30)
