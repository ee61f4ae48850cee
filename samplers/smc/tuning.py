"""Move tuning parts: the weights the population is averaged with, the whitening the move
runs in, and the step size with its retuning after each sweep.

A :class:`Tuner` adapts from the run's own particles (:func:`adaptive_tuner`) or replays
a pilot run's :class:`~.state.Tuning` (:func:`replay_tuner`), so that nothing depends on
the run's own particles.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from bayeswb.samplers.smc.state import Tuning

Array = jax.Array


class Whitening(NamedTuple):
    """The move runs on ``z = (x - mean) / sd``."""

    mean: Array  # (dim,)
    sd: Array  # (dim,)


class Tuner(NamedTuple):
    """How a step tunes its move.

    whiten:     ``(step index, positions, weights) -> Whitening``
    step_size:  ``(step index, carried log step size) -> log step size of this step``
    update:     ``(log step size, weighted acceptance) -> log step size``, after each sweep
    """

    whiten: Callable[[Array, Array, Array], Whitening]
    step_size: Callable[[Array, Array], Array]
    update: Callable[[Array, Array], Array]


def normalised_weights(log_weights: Array) -> Array:
    """The particles' own weights: after ESS-triggered resampling, their ESS is at least
    ``ess_threshold * N``."""
    return jnp.exp(log_weights)


def alive_weights(log_weights: Array) -> Array:
    """Equal weights on the particles still alive. AIS never resamples, and a particle
    dominating a degenerate population would tune its own kernel (which biases log Z by
    far more than O(1/N)), so AIS averages the unweighted particles.

    Example:
        >>> alive_weights(jnp.array([0.0, -jnp.inf, -5.0])).tolist()
        [0.5, 0.0, 0.5]
    """
    alive = (log_weights > -jnp.inf).astype(log_weights.dtype)
    return alive / jnp.maximum(jnp.sum(alive), 1.0)


def moment_whitening(index: Array, positions: Array, weights: Array) -> Whitening:
    """The weighted mean and sd of the particles (sd 1 where it is 0 or not finite).

    Example:
        >>> x = jnp.array([[0.0, 1.0], [2.0, 1.0]])
        >>> moment_whitening(0, x, jnp.full(2, 0.5)).sd.tolist()
        [1.0, 1.0]
    """
    mean = weights @ positions
    sd = jnp.sqrt(weights @ (positions - mean) ** 2)
    sd = jnp.where(jnp.isfinite(sd) & (sd > 0), sd, 1.0)
    return Whitening(mean, sd)


def no_whitening(dim: int) -> Callable[[Array, Array, Array], Whitening]:
    """``z = x``."""
    return lambda index, positions, weights: Whitening(jnp.zeros(dim), jnp.ones(dim))


def carried_step_size(index: Array, log_step_size: Array) -> Array:
    """The step size the previous step ended with."""
    return log_step_size


def keep_step_size(log_step_size: Array, acceptance: Array) -> Array:
    """No retuning."""
    return log_step_size


def acceptance_update(target_acceptance_rate: float) -> Callable[[Array, Array], Array]:
    """``log h += acceptance - target`` after each sweep.

    Example:
        >>> float(acceptance_update(0.5)(jnp.array(0.0), jnp.array(0.75)))
        0.25
    """
    return lambda log_step_size, acceptance: log_step_size + (acceptance - target_acceptance_rate)


def adaptive_tuner(
    dim: int, precondition: bool, adapt_step_size: bool, target_acceptance_rate: float
) -> Tuner:
    """Whitening by the weighted particles' moments (``precondition``, else none) and the
    step size retuned towards ``target_acceptance_rate`` (``adapt_step_size``)."""
    return Tuner(
        whiten=moment_whitening if precondition else no_whitening(dim),
        step_size=carried_step_size,
        update=acceptance_update(target_acceptance_rate) if adapt_step_size else keep_step_size,
    )


def replay_tuner(tuning: Tuning) -> Tuner:
    """Step t whitens and steps as a pilot run's step t did, with no retuning."""
    return Tuner(
        whiten=lambda index, positions, weights: Whitening(tuning.mean[index], tuning.sd[index]),
        step_size=lambda index, log_step_size: jnp.log(tuning.step_size[index]),
        update=keep_step_size,
    )
