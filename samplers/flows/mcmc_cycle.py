"""One cycle of ``flow_mcmc`` for every chain: MALA steps, then one independence
Metropolis-Hastings step from the flow (Gabrie, Rotskoff and Vanden-Eijnden 2022,
Algorithm 1), here from a defensive mixture of the flow and a broad Gaussian.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import blackjax
import jax
import jax.numpy as jnp
from blackjax.adaptation.step_size import dual_averaging_adaptation

Array = jax.Array


def independence_mh_step(
    key: Array,
    state: Any,
    proposal: Callable[[Array], Array],
    log_q: Callable[[Array], Array],
    logdensity_fn: Callable[[Array], Array],
) -> tuple[Any, Array]:
    """One independence Metropolis-Hastings step (Gabrie et al. 2022, eq. 5) with proposal
    draws ``proposal(key) -> (dim,)`` of density ``exp(log_q(x))``, on a blackjax MALA
    state (position, logdensity, logdensity_grad); costs one target gradient.

    Returns the new state and the acceptance probability; a non-finite proposal is
    rejected (probability 0).
    """
    proposal_key, accept_key = jax.random.split(key)
    new_position = proposal(proposal_key)
    logdensity, logdensity_grad = jax.value_and_grad(logdensity_fn)(new_position)
    log_ratio = logdensity - state.logdensity + log_q(state.position) - log_q(new_position)
    finite = (
        jnp.isfinite(log_ratio)
        & jnp.all(jnp.isfinite(new_position))
        & jnp.all(jnp.isfinite(logdensity_grad))
    )
    log_ratio = jnp.where(finite, log_ratio, -jnp.inf)
    accept = jnp.log(jax.random.uniform(accept_key)) < log_ratio
    new = state._replace(
        position=new_position, logdensity=logdensity, logdensity_grad=logdensity_grad
    )
    state = jax.tree.map(lambda n, o: jnp.where(accept, n, o), new, state)
    return state, jnp.exp(jnp.minimum(log_ratio, 0.0))


def defensive_proposal(
    flow: Any, broad: Any, broad_weight: float
) -> tuple[Callable[[Array], Array], Callable[[Array], Array]]:
    """The mixture ``(1 - a) q_flow + a q_broad`` as ``(proposal, log_q)``: a defensive
    mixture (Hesterberg 1995, "Weighted average importance sampling and defensive mixture
    distributions", Technometrics 37), so that regions the flow has not (yet) learned keep
    proposal mass; ``a = 0`` is the plain flow."""
    if broad_weight == 0.0:
        return (lambda k: flow.sample(k)), flow.log_prob
    log_a, log_1ma = math.log(broad_weight), math.log1p(-broad_weight)

    def proposal(key: Array) -> Array:
        choose_key, flow_key, broad_key = jax.random.split(key, 3)
        use_broad = jax.random.bernoulli(choose_key, broad_weight)
        return jnp.where(use_broad, broad.sample(broad_key), flow.sample(flow_key))

    def log_q(x: Array) -> Array:
        return jnp.logaddexp(log_1ma + flow.log_prob(x), log_a + broad.log_prob(x))

    return proposal, log_q


class ChainCarry(NamedTuple):
    """A chain's state between MALA steps (batched: every chain's): the blackjax MALA
    state and the step size, as its dual-averaging state while adapting (warmup) and as
    the frozen step size after."""

    state: Any
    step_size: Any


def _current_step_size(step_size: Any, adapt: bool) -> Array:
    return jnp.exp(step_size.log_step_size) if adapt else step_size


def local_steps(
    key: Array,
    chain: ChainCarry,
    logdensity_fn: Callable[[Array], Array],
    num_steps: int,
    adapt_to: float | None,
) -> tuple[ChainCarry, Array, Array]:
    """``num_steps`` MALA steps of one chain (blackjax's ``mala``), its step size adapted
    by dual averaging towards acceptance rate ``adapt_to`` (None: kept). Returns the
    chain, the positions it visited (num_steps, dim) and its mean acceptance rate."""
    mala = blackjax.mala.build_kernel()
    adapt = adapt_to is not None
    if adapt:
        _, da_update, _ = dual_averaging_adaptation(adapt_to)

    def step(chain: ChainCarry, step_key: Array) -> tuple[ChainCarry, tuple[Array, Array]]:
        step_size = _current_step_size(chain.step_size, adapt)
        state, info = mala(step_key, chain.state, logdensity_fn, step_size)
        step_size = chain.step_size
        if adapt:
            step_size = da_update(step_size, jnp.nan_to_num(info.acceptance_rate))
        return ChainCarry(state, step_size), (state.position, info.acceptance_rate)

    chain, (trail, acceptance) = jax.lax.scan(step, chain, jax.random.split(key, num_steps))
    return chain, trail, jnp.mean(acceptance)


class Draw(NamedTuple):
    """One draw of every chain: positions (chains, dim) and stats (each (chains,))."""

    positions: Array
    stats: dict[str, Array]


class Cycle(NamedTuple):
    """One cycle of every chain: the chains after the global step, the positions of their
    local steps (chains, num_local_steps, dim) and the cycle's draw."""

    chains: ChainCarry
    trail: Array
    draw: Draw


def cycle(
    key: Array,
    chains: ChainCarry,
    logdensity_fn: Callable[[Array], Array],
    num_local_steps: int,
    adapt_to: float | None,
    proposal: tuple[Callable[[Array], Array], Callable[[Array], Array]],
) -> Cycle:
    """``num_local_steps`` MALA steps of every chain (:func:`local_steps`, step sizes
    adapted towards acceptance rate ``adapt_to`` unless None), then one independence MH
    step each (:func:`independence_mh_step`) from ``proposal = (draw, log_q)``, as
    :func:`defensive_proposal` makes it."""
    local_key, global_key = jax.random.split(key)
    num_chains = chains.state.position.shape[0]
    local = lambda k, c: local_steps(k, c, logdensity_fn, num_local_steps, adapt_to)
    chains, trail, acceptance = jax.vmap(local)(jax.random.split(local_key, num_chains), chains)
    draw, log_q = proposal
    global_step = lambda k, s: independence_mh_step(k, s, draw, log_q, logdensity_fn)
    states, global_acceptance = jax.vmap(global_step)(
        jax.random.split(global_key, num_chains), chains.state
    )
    stats = {
        "lp": states.logdensity,
        "acceptance_rate": acceptance,
        "global_acceptance_rate": global_acceptance,
        "step_size": _current_step_size(chains.step_size, adapt_to is not None),
    }
    return Cycle(chains._replace(state=states), trail, Draw(states.position, stats))
