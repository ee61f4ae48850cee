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

from bayeswb.core.whitening import Whitening
from bayeswb.samplers.smc.state import Tuning

Array = jax.Array


# the most coordinates whitened by the particles' full covariance (``precondition=True``);
# above, by their sd per coordinate: each move step then costs O(dim^2) per particle more
FULL_WHITENING_MAX_DIM = 100


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
        >>> moment_whitening(0, x, jnp.full(2, 0.5)).scale.tolist()
        [1.0, 1.0]
    """
    mean = weights @ positions
    sd = jnp.sqrt(weights @ (positions - mean) ** 2)
    sd = jnp.where(jnp.isfinite(sd) & (sd > 0), sd, 1.0)
    return Whitening(mean, sd)


def covariance_whitening(index: Array, positions: Array, weights: Array) -> Whitening:
    """The weighted mean and a Cholesky factor of the weighted covariance, its correlations
    shrunk towards 0 by :func:`correlation_shrinkage`; :func:`moment_whitening`'s sd where
    the factor is not finite. A move in these coordinates sees a correlated target as
    uncorrelated, which a per-coordinate sd cannot do (the population's covariance as the
    proposal's scale, as in Chopin 2002 and the random-walk kernels of Dau and Chopin 2022).

    Example:
        >>> x = jnp.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.1]])
        >>> w = covariance_whitening(0, x, jnp.full(4, 0.25))
        >>> w.scale.shape, bool(jnp.abs(w.whiten(x)[:, 1]).max() < jnp.abs(x[:, 1]).max())
        ((2, 2), True)
    """
    diagonal = moment_whitening(index, positions, weights)
    standardised = (positions - diagonal.mean) / diagonal.scale
    correlation = (weights[:, None] * standardised).T @ standardised
    dim = positions.shape[1]
    correlation = correlation.at[jnp.diag_indices(dim)].set(1.0)
    shrink = correlation_shrinkage(standardised, weights, correlation)
    identity = jnp.eye(dim, dtype=correlation.dtype)
    factor = jnp.linalg.cholesky((1.0 - shrink) * correlation + shrink * identity)
    scale = diagonal.scale[:, None] * factor
    scale = jnp.where(jnp.all(jnp.isfinite(scale)), scale, jnp.diag(diagonal.scale))
    return Whitening(diagonal.mean, scale)


def correlation_shrinkage(standardised: Array, weights: Array, correlation: Array) -> Array:
    """Schäfer and Strimmer's (2005, "A shrinkage approach to large-scale covariance matrix
    estimation", their target D: correlations shrunk, variances kept) intensity:
    the summed estimated variance of the off-diagonal correlations over their summed
    squares, in [0, 1]. Near 0 for a strongly correlated population, near 1 for an
    uncorrelated one, where the estimate is mostly noise. The variance of each weighted
    mean ``r_ij = sum_k W_k z_ki z_kj`` is ``sum_k W_k^2 (z_ki z_kj - r_ij)^2``.

    Example:
        >>> z = jax.random.normal(jax.random.key(0), (2000, 3))
        >>> w = jnp.full(2000, 1 / 2000)
        >>> float(correlation_shrinkage(z, w, (w[:, None] * z).T @ z)) > 0.5
        True
    """
    squared_weights = weights**2
    products = (squared_weights[:, None] * standardised**2).T @ standardised**2
    cross = (squared_weights[:, None] * standardised).T @ standardised
    variance = products - 2 * correlation * cross + correlation**2 * jnp.sum(squared_weights)
    off_diagonal = 1.0 - jnp.eye(correlation.shape[0], dtype=correlation.dtype)
    ratio = jnp.sum(off_diagonal * variance) / jnp.sum(off_diagonal * correlation**2)
    return jnp.clip(jnp.nan_to_num(ratio, nan=1.0), 0.0, 1.0)


def particle_whitening(
    dim: int, precondition: bool | str
) -> Callable[[Array, Array, Array], Whitening]:
    """The whitening a ``precondition`` option names: True, the full covariance up to
    ``FULL_WHITENING_MAX_DIM`` coordinates and the sd per coordinate above; "full";
    "diagonal"; False, none.

    Example:
        >>> particle_whitening(3, True) is covariance_whitening
        True
    """
    if precondition is False:
        return no_whitening(dim)
    if precondition == "diagonal" or (precondition is True and dim > FULL_WHITENING_MAX_DIM):
        return moment_whitening
    return covariance_whitening


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
    dim: int, precondition: bool | str, adapt_step_size: bool, target_acceptance_rate: float
) -> Tuner:
    """Whitening by the weighted particles' moments (:func:`particle_whitening` of
    ``precondition``) and the step size retuned towards ``target_acceptance_rate``
    (``adapt_step_size``)."""
    return Tuner(
        whiten=particle_whitening(dim, precondition),
        step_size=carried_step_size,
        update=acceptance_update(target_acceptance_rate) if adapt_step_size else keep_step_size,
    )


def replay_tuner(tuning: Tuning) -> Tuner:
    """Step t whitens and steps as a pilot run's step t did, with no retuning."""
    return Tuner(
        whiten=lambda index, positions, weights: Whitening(
            tuning.mean[index], tuning.scale[index]
        ),
        step_size=lambda index, log_step_size: jnp.log(tuning.step_size[index]),
        update=keep_step_size,
    )
