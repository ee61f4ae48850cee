"""Move tuning parts: the weights the population is averaged with, the whitening the move
runs in, and the step size with its retuning after each sweep.

A :class:`Tuner` adapts from the run's own particles (:func:`adaptive_tuner`) or replays
a pilot run's :class:`~.state.Tuning` (:func:`replay_tuner`), so that nothing depends on
the run's own particles.
"""

from __future__ import annotations

import functools
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
# the condition number of the particles' (shrunk) correlations above which they are
# whitened by their covariance rather than their sds: 100, a narrowest direction a tenth
# of the widest after the sds are divided out. Measured on default smc's final particles
# (seed 0, one run): the rotated 10-d Gaussian of eigenvalues 1e-4 to 1, 3000 (its sds
# 0.77-0.96 of the true ones under the sds alone, 0.99-1.01 under this rule);
# brownian_motion 930, horseshoe_diabetes 118; logistic_breast_cancer 78,
# bnn_classification 24, manywell 19, eight_schools_centered 9. On bnn_classification,
# whitened by the covariance at every step, default smc's means were 9.9-15 MCSE off at
# 1000 particles (seeds 1 and 0; seed 0's verdict said "fine"), and 2.1-3.8 under the
# sds; so the covariance is used only where the sds leave the target badly conditioned.
# The threshold was set after seeing these numbers
FULL_WHITENING_MIN_CONDITION = 100.0


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


def covariance_whitening(
    index: Array,
    positions: Array,
    weights: Array,
    min_condition: float = FULL_WHITENING_MIN_CONDITION,
) -> Whitening:
    """The weighted mean and a Cholesky factor of the weighted covariance where the
    correlations, shrunk towards 0 by :func:`correlation_shrinkage`, have a condition
    number above ``min_condition``; else :func:`moment_whitening`'s sd, as a diagonal
    matrix. A move in these coordinates sees a strongly correlated target as uncorrelated,
    which a per-coordinate sd cannot do (the population's covariance as the proposal's
    scale, as in Chopin 2002 and the random-walk kernels of Dau and Chopin 2022).

    The shrinkage decides only the gate, where noise in an uncorrelated population's
    estimate must not pass for correlation. The factor is the unshrunk covariance's (the
    shrunk one's where that is not finite, e.g. fewer distinct particles than
    coordinates): the estimate's own error in an eigenvalue is relative (about
    ``sqrt(dim / N)``), harmless to a move's scale, while shrinkage adds the same
    intensity to every eigenvalue of the correlations, which widens the narrowest
    directions many-fold. On the rotated 10-d Gaussian of eigenvalues 1e-6 to 1, default
    smc's sds were 0.92-0.97 of the true ones with the shrunk factor and 0.99-1.01 with
    this one, at half the gradients (8 runs, seed 0).

    Example:
        >>> x = jnp.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.01]])
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
    shrunk = (1.0 - shrink) * correlation + shrink * identity
    eigenvalues = jnp.linalg.eigvalsh(shrunk)
    correlated = eigenvalues[-1] > min_condition * eigenvalues[0]
    factor = jnp.linalg.cholesky(correlation)
    factor = jnp.where(jnp.all(jnp.isfinite(factor)), factor, jnp.linalg.cholesky(shrunk))
    scale = diagonal.scale[:, None] * factor
    use = correlated & jnp.all(jnp.isfinite(scale))
    return Whitening(diagonal.mean, jnp.where(use, scale, jnp.diag(diagonal.scale)))


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


def held_out_whitening(index: Array, positions: Array, weights: Array) -> Whitening:
    """:func:`covariance_whitening` of two independent populations stacked (the first and
    the last ``N / 2`` rows, each of weight 1/2 in ``weights``), gated by prediction rather
    than by the correlations' condition number: the pooled mean and covariance factor
    where the Gaussian of one half's covariance gives the other half's particles a higher
    weighted mean log density than the Gaussian of its sds alone (both ways, summed),
    else the pooled sds.

    The condition number's gate takes the particles as independent draws. An SMC run's
    are not: a few initial draws are the ancestors of all of them (the pilot of 512 on
    the 32-d manywell kept 1 to 12), and where the move cannot carry a particle between
    modes the descendants share their ancestors' modes, so the particles' correlations
    are those of a dozen draws. Manywell's 16 double wells are independent, yet 5 of 8
    pilots' correlations passed that gate (shrunk condition numbers 110 to 382), and
    smc_langevin's main runs from those references were 3 to 29 nats low. Spurious
    correlations of one half are not the other's, so the fitted Gaussian predicts the
    other half worse than the sds alone do (every pilot there); real ones predict it
    better (the rotated 10-d Gaussian of eigenvalues 1e-4 to 1: every pilot).

    Example:
        >>> t = jax.random.normal(jax.random.key(0), (200, 1))
        >>> x = jnp.concatenate([t, t + 0.1 * jax.random.normal(jax.random.key(1), (200, 1))], 1)
        >>> bool(held_out_whitening(0, x, jnp.full(200, 1 / 200)).scale[1, 0] > 0.5)
        True
        >>> z = jax.random.normal(jax.random.key(2), (200, 10))  # uncorrelated: the sds
        >>> w = held_out_whitening(0, z, jnp.full(200, 1 / 200)).scale
        >>> bool(jnp.all(w == jnp.diag(jnp.diagonal(w))))
        True
    """
    half = positions.shape[0] // 2
    halves = positions[:half], positions[half:]
    half_weights = weights[:half], weights[half:]
    scores = jnp.zeros(2)
    for fit, held_out in ((0, 1), (1, 0)):
        fit_weights = half_weights[fit] / jnp.sum(half_weights[fit])
        held_out_weights = half_weights[held_out] / jnp.sum(half_weights[held_out])
        fitted = covariance_whitening(index, halves[fit], fit_weights, min_condition=0.0)
        sds = jnp.sqrt(jnp.sum(fitted.scale**2, axis=1))
        for gate, whitening in enumerate((Whitening(fitted.mean, sds), fitted)):
            z = whitening.whiten(halves[held_out])
            log_density = -0.5 * jnp.sum(z**2, axis=1) - whitening.log_jacobian
            scores = scores.at[gate].add(held_out_weights @ log_density)
    pooled = covariance_whitening(index, positions, weights, min_condition=0.0)
    diagonal = moment_whitening(index, positions, weights)
    use = (scores[1] > scores[0]) & jnp.all(jnp.isfinite(pooled.scale))
    return Whitening(diagonal.mean, jnp.where(use, pooled.scale, jnp.diag(diagonal.scale)))


def particle_whitening(
    dim: int, precondition: bool | str, halves: bool = False
) -> Callable[[Array, Array, Array], Whitening]:
    """The whitening a ``precondition`` option names: True, :func:`covariance_whitening`
    (the covariance where the correlations are badly conditioned, else the sds), or
    :func:`held_out_whitening` for particles that are two independent ``halves``, up to
    ``FULL_WHITENING_MAX_DIM`` coordinates and the sd per coordinate above; "full", the
    covariance always; "diagonal", the sds always; False, none.

    Example:
        >>> particle_whitening(3, True) is covariance_whitening
        True
    """
    if precondition is False:
        return no_whitening(dim)
    if precondition == "diagonal" or (precondition is True and dim > FULL_WHITENING_MAX_DIM):
        return moment_whitening
    if precondition == "full":
        return functools.partial(covariance_whitening, min_condition=0.0)
    return held_out_whitening if halves else covariance_whitening


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
