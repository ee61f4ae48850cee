"""The tempered path ``pi_beta proportional to q^(1 - beta) gamma^beta``: temperature
schedules (the next beta of a step) and the reweighting from one beta to the next.

A schedule is a function ``State -> next temperature`` (:func:`adaptive_schedule`,
:func:`ladder_schedule`); :func:`reweight` multiplies each weight by
``(gamma / q)^(beta_{t+1} - beta_t)`` in log space and returns the log Z increment
``log sum_i W_i w_i``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from blackjax.smc.solver import dichotomy
from jax.scipy.special import logsumexp

from bayeswb.samplers.smc.state import State

Array = jax.Array
Schedule = Callable[[State], Array]

SCHEDULES = ("adaptive", "linear", "geometric")
# geometric schedules start at 10^GEOMETRIC_START (Neal 2001 uses a geometric spacing)
GEOMETRIC_START = -4.0


class Reweighted(NamedTuple):
    """Normalised log weights at the new temperature and the step's log Z increment."""

    log_weights: Array
    log_z_increment: Array


def normalise(log_weights: Array) -> tuple[Array, Array]:
    """Normalised log weights and their log sum; all -inf stays -inf (no NaN).

    Example:
        >>> w, total = normalise(jnp.log(jnp.array([1.0, 3.0])))
        >>> jnp.exp(w).tolist(), round(float(total), 4)  # log 4
        ([0.25, 0.75], 1.3863)
    """
    total = logsumexp(log_weights)
    safe = jnp.where(jnp.isfinite(total), total, 0.0)
    return log_weights - safe, total


def tempering_increment(delta: Array, log_ratio: Array) -> Array:
    """``delta * log_ratio``, the log incremental weight of a step ``delta`` in beta.

    Example:
        >>> tempering_increment(0.0, jnp.array([2.0, -jnp.inf])).tolist()
        [0.0, -inf]
    """
    # delta * (-inf) must be -inf also at delta = 0 (a dead particle stays dead)
    return jnp.where(log_ratio == -jnp.inf, -jnp.inf, delta * log_ratio)


def reweight(log_weights: Array, log_ratio: Array, delta: Array) -> Reweighted:
    """Reweight normalised ``log_weights`` by a step ``delta`` in beta; the log Z increment
    is ``log sum_i W_i exp(delta log_ratio_i)`` (Del Moral, Doucet and Jasra 2006, eq. 14).

    Example:
        >>> out = reweight(jnp.log(jnp.full(2, 0.5)), jnp.array([0.0, 2.0]), 0.5)
        >>> round(float(out.log_z_increment), 4)  # log((1 + e) / 2)
        0.6201
    """
    return Reweighted(*normalise(log_weights + tempering_increment(delta, log_ratio)))


def log_conditional_ess(log_weights: Array, increment: Array) -> Array:
    """log CESS = log N + 2 log sum W w - log sum W w^2 (Zhou, Johansen, Aston 2016).

    Example:
        >>> w = jnp.log(jnp.full(4, 0.25))
        >>> round(float(jnp.exp(log_conditional_ess(w, jnp.zeros(4)))), 4)  # equal w: N
        4.0
    """
    n = log_weights.shape[0]
    return (
        math.log(n)
        + 2.0 * logsumexp(log_weights + increment)
        - logsumexp(log_weights + 2.0 * increment)
    )


def adaptive_temperature(
    temperature: Array, log_ratio: Array, log_weights: Array, target_conditional_ess: float
) -> Array:
    """Largest beta with CESS = target * N, by bisection on the particles still alive
    (blackjax's ``smc.solver.dichotomy``); 1 if even beta = 1 keeps the CESS above it."""
    alive, _ = normalise(jnp.where(log_ratio == -jnp.inf, -jnp.inf, log_weights))
    log_target = math.log(target_conditional_ess * log_weights.shape[0])
    max_delta = 1.0 - temperature

    def excess(delta: Array) -> Array:
        return log_conditional_ess(alive, tempering_increment(delta, log_ratio)) - log_target

    delta = dichotomy(excess, jnp.zeros_like(temperature), max_delta)
    # NaN only if no particle is alive: jump to the end, log Z = -inf
    delta = jnp.where(jnp.isnan(delta), max_delta, delta)
    return jnp.where(delta >= max_delta, 1.0, temperature + delta)


def fixed_schedule(name: str, num_steps: int) -> Array:
    """Temperatures ``beta_0 = 0 < ... < beta_T = 1`` (T = num_steps): ``linear`` or
    ``geometric`` (``beta_1 ... beta_T`` equally spaced in log from 1e-4 to 1).

    Example:
        >>> fixed_schedule("linear", 4).tolist()
        [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    if name == "linear":
        return jnp.linspace(0.0, 1.0, num_steps + 1)
    return jnp.concatenate([jnp.zeros(1), jnp.logspace(GEOMETRIC_START, 0.0, num_steps)])


def adaptive_schedule(target_conditional_ess: float, num_steps: int) -> Schedule:
    """The next beta by :func:`adaptive_temperature`; step ``num_steps`` (the last one
    allowed) goes to 1."""

    def schedule(state: State) -> Array:
        temperature = adaptive_temperature(
            state.temperature, state.log_ratio, state.log_weights, target_conditional_ess
        )
        return jnp.where(state.steps_taken == num_steps - 1, 1.0, temperature)

    return schedule


def ladder_schedule(temperatures: Array) -> Schedule:
    """Step t goes to ``temperatures[t]``: a fixed schedule without its ``beta_0 = 0``,
    or a pilot run's temperatures (:attr:`~.state.Tuning.temperature`) replayed."""
    return lambda state: temperatures[state.steps_taken]


def make_schedule(name: str, num_steps: int, target_conditional_ess: float) -> Schedule:
    """The schedule called ``name`` in :data:`SCHEDULES`."""
    if name == "adaptive":
        return adaptive_schedule(target_conditional_ess, num_steps)
    return ladder_schedule(fixed_schedule(name, num_steps)[1:])
