"""The shared chain driver: lax.scan over steps, vmap over chains.

Every MCMC sampler supplies a per-chain function; the driver splits the key, vmaps the
chains and scans the steps, so there is one compiled program per run and no Python loop
over steps or chains.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

Array = jax.Array
State = Any
Info = Any


def sample_chain(
    key: Array,
    step_fn: Callable[[Array, State], tuple[State, Info]],
    initial_state: State,
    num_steps: int,
    trace_fn: Callable[[State, Info], Any],
) -> tuple[State, Any]:
    """Run ``num_steps`` transitions of one chain with ``lax.scan``.

    ``step_fn(key, state) -> (state, info)`` is one kernel transition (blackjax's
    pattern); ``trace_fn(state, info)`` picks what to keep per step, so memory is
    bounded by what is traced, not by the full state.

    Returns the final state and the stacked traces, each with a leading ``num_steps`` axis.

    Example:
        >>> import jax.numpy as jnp
        >>> step = lambda k, s: (s + 1.0, None)
        >>> final, trace = sample_chain(jax.random.key(0), step, 0.0, 3, lambda s, i: s)
        >>> trace.tolist()
        [1.0, 2.0, 3.0]
    """

    def one_step(state: State, step_key: Array) -> tuple[State, Any]:
        state, info = step_fn(step_key, state)
        return state, trace_fn(state, info)

    return jax.lax.scan(one_step, initial_state, jax.random.split(key, num_steps))


def run_chains(key: Array, num_chains: int, chain_fn: Callable[[Array], Any]) -> Any:
    """Run ``chain_fn(key)`` for ``num_chains`` independent keys with ``vmap``.

    Each chain's key is ``jax.random.split(key, num_chains)[i]``: the same seed gives the
    same chains whatever the device layout.
    """
    return jax.vmap(chain_fn)(jax.random.split(key, num_chains))
