"""References: the normalised distributions q an annealing run starts from (Z_0 = 1).

Any :class:`Reference` works (smc_flow's is a trained flow); here a Gaussian, a diagonal
Gaussian moment-matched to weighted particles, and a multivariate Student-t.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array


class Reference(NamedTuple):
    """The normalised distribution q the annealing starts from.

    sample:    ``(key, n) -> (n, dim)`` draws from q
    log_prob:  ``(dim,) -> ()`` log q(x), normalised (so that Z_0 = 1); differentiable
    """

    sample: Callable[[Array, int], Array]
    log_prob: Callable[[Array], Array]


def gaussian_reference(dim: int, scale: float) -> Reference:
    """``N(0, scale^2 I)`` on R^dim.

    Example:
        >>> q = gaussian_reference(2, 1.0)
        >>> round(float(q.log_prob(jnp.zeros(2))), 4)  # -log(2 pi)
        -1.8379
    """
    constant = dim * (math.log(scale) + 0.5 * math.log(2 * math.pi))

    def sample(key: Array, n: int) -> Array:
        return scale * jax.random.normal(key, (n, dim))

    def log_prob(x: Array) -> Array:
        return -0.5 * jnp.sum((x / scale) ** 2) - constant

    return Reference(sample, log_prob)


def diagonal_gaussian_reference(mean: Array, sd: Array) -> Reference:
    """``N(mean, diag(sd^2))``, e.g. moment-matched to a pilot run's weighted particles.

    Example:
        >>> q = diagonal_gaussian_reference(jnp.ones(2), jnp.full(2, 2.0))
        >>> round(float(q.log_prob(jnp.ones(2))), 4)  # -log(2 pi) - 2 log 2
        -3.2242
    """
    mean, sd = jnp.asarray(mean), jnp.asarray(sd)
    constant = jnp.sum(jnp.log(sd)) + 0.5 * mean.shape[-1] * math.log(2 * math.pi)

    def sample(key: Array, n: int) -> Array:
        return mean + sd * jax.random.normal(key, (n, mean.shape[-1]))

    def log_prob(x: Array) -> Array:
        return -0.5 * jnp.sum(((x - mean) / sd) ** 2) - constant

    return Reference(sample, log_prob)


def student_t_reference(dim: int, scale: float, dof: float) -> Reference:
    """The multivariate Student-t ``t_dof(0, scale^2 I)`` on R^dim: ``scale z / sqrt(g)``
    with ``z ~ N(0, I)``, ``g ~ Gamma(dof / 2, rate dof / 2)``.

    Its tails fall like ``|x|^-(dof + dim)``, so ``q^(1 - beta)`` tempers a target's tails
    (a funnel's mouth) far less than a Gaussian's ``exp(-|x|^2 / 2 s^2)``.

    Example:
        >>> q = student_t_reference(1, 1.0, 1.0)  # Cauchy: log q(0) = -log(pi)
        >>> round(float(q.log_prob(jnp.zeros(1))), 4)
        -1.1447
    """
    return diagonal_student_t_reference(jnp.zeros(dim), jnp.full(dim, scale), dof)


def diagonal_student_t_reference(mean: Array, scale: Array, dof: float) -> Reference:
    """The multivariate Student-t ``t_dof(mean, diag(scale^2))``: ``mean + scale z /
    sqrt(g)``, ``z ~ N(0, I)``, ``g ~ Gamma(dof / 2, rate dof / 2)`` (its covariance is
    ``diag(scale^2) dof / (dof - 2)`` for ``dof > 2``).

    Example:
        >>> q = diagonal_student_t_reference(jnp.ones(1), jnp.full(1, 2.0), 1.0)
        >>> round(float(q.log_prob(jnp.ones(1))), 4)  # Cauchy of scale 2: -log(2 pi)
        -1.8379
    """
    mean, scale = jnp.asarray(mean), jnp.asarray(scale)
    dim = mean.shape[-1]
    half = 0.5 * (dof + dim)
    constant = (
        math.lgamma(half)
        - math.lgamma(0.5 * dof)
        - 0.5 * dim * math.log(dof * math.pi)
        - jnp.sum(jnp.log(scale))
    )

    def sample(key: Array, n: int) -> Array:
        normal_key, gamma_key = jax.random.split(key)
        z = jax.random.normal(normal_key, (n, dim))
        g = jax.random.gamma(gamma_key, 0.5 * dof, (n, 1)) / (0.5 * dof)
        return mean + scale * z / jnp.sqrt(g)

    def log_prob(x: Array) -> Array:
        return constant - half * jnp.log1p(jnp.sum(((x - mean) / scale) ** 2) / dof)

    return Reference(sample, log_prob)


def diagonal_reference(mean: Array, scale: Array, dof: float | None) -> Reference:
    """``N(mean, diag(scale^2))``, or ``t_dof(mean, diag(scale^2))`` if ``dof`` is set."""
    if dof is None:
        return diagonal_gaussian_reference(mean, scale)
    return diagonal_student_t_reference(mean, scale, dof)


def moment_matched_reference(
    positions: Array,
    log_weights: Array,
    fallback_scale: Array | float,
    widen: float = 1.0,
    dof: float | None = None,
) -> Reference:
    """``N(mean, diag (widen sd)^2)`` of weighted particles (normalised ``log_weights``),
    e.g. a pilot run's; ``N(0, fallback_scale^2 I)`` if a moment is not finite or an sd
    is 0. With ``dof``, the Student-t ``t_dof`` of that location and scale instead.

    Example:
        >>> x = jnp.array([[0.0, 1.0], [2.0, 1.0]])
        >>> q = moment_matched_reference(x, jnp.log(jnp.full(2, 0.5)), 3.0)
        >>> q.log_prob(jnp.zeros(2)).item()  # sd 0 in the second coordinate: the fallback
        -4.0351...
    """
    mean, sd = weighted_moments(positions, log_weights, fallback_scale, widen)
    return diagonal_reference(mean, sd, dof)


def weighted_moments(
    positions: Array, log_weights: Array, fallback_scale: Array | float, widen: float = 1.0
) -> tuple[Array, Array]:
    """``(mean, widen * sd)`` of weighted particles (normalised ``log_weights``), or
    ``(0, fallback_scale)`` if a moment is not finite or an sd is 0: the location and
    scale of :func:`moment_matched_reference`."""
    w = jnp.exp(log_weights)
    mean = w @ positions
    sd = jnp.sqrt(w @ (positions - mean) ** 2)
    ok = jnp.all(jnp.isfinite(mean)) & jnp.all(jnp.isfinite(sd) & (sd > 0))
    mean = jnp.where(ok, mean, 0.0)
    sd = jnp.where(ok, widen * sd, fallback_scale)
    return mean, sd
