"""References: the normalised distributions q an annealing run starts from (Z_0 = 1).

Any :class:`Reference` works (smc_flow's is a trained flow); here Gaussians and
multivariate Student-t's in whitened coordinates (:func:`whitened_reference`), among them
those fitted to weighted particles (:func:`moment_matched_reference`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from bayeswb.core.whitening import Whitening
from bayeswb.samplers.smc.tuning import moment_whitening

Array = jax.Array
Whiten = Callable[[Array, Array, Array], Whitening]


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


def whitened_reference(whitening: Whitening, dof: float | None = None) -> Reference:
    """``N(mean, S S^T)`` with ``S = whitening.scale`` (an sd per coordinate or a
    lower-triangular factor): ``x = mean + S z``, ``z ~ N(0, I)``; or with ``dof`` the
    multivariate Student-t ``t_dof(mean, S S^T)``: ``x = mean + S z / sqrt(g)``,
    ``g ~ Gamma(dof / 2, rate dof / 2)`` (covariance ``S S^T dof / (dof - 2)`` for
    ``dof > 2``). A Student-t's tails fall like ``|x|^-(dof + dim)``, so ``q^(1 - beta)``
    tempers a target's tails (a funnel's mouth) far less than a Gaussian's.

    Example:
        >>> w = Whitening(jnp.zeros(2), jnp.array([[2.0, 0.0], [1.0, 1.0]]))
        >>> q = whitened_reference(w)  # covariance [[4, 2], [2, 2]], determinant 4
        >>> round(float(q.log_prob(jnp.zeros(2))), 4)  # -log(2 pi) - log 2
        -2.531
        >>> q.sample(jax.random.key(0), 3).shape
        (3, 2)
    """
    dim = whitening.mean.shape[-1]
    if dof is None:
        constant = whitening.log_jacobian + 0.5 * dim * math.log(2 * math.pi)

        def log_prob(x: Array) -> Array:
            return -0.5 * jnp.sum(whitening.whiten(x) ** 2) - constant

        def sample(key: Array, n: int) -> Array:
            return whitening.unwhiten(jax.random.normal(key, (n, dim)))

        return Reference(sample, log_prob)
    half = 0.5 * (dof + dim)
    t_constant = (
        math.lgamma(half)
        - math.lgamma(0.5 * dof)
        - 0.5 * dim * math.log(dof * math.pi)
        - whitening.log_jacobian
    )

    def t_sample(key: Array, n: int) -> Array:
        normal_key, gamma_key = jax.random.split(key)
        z = jax.random.normal(normal_key, (n, dim))
        g = jax.random.gamma(gamma_key, 0.5 * dof, (n, 1)) / (0.5 * dof)
        return whitening.unwhiten(z / jnp.sqrt(g))

    def t_log_prob(x: Array) -> Array:
        return t_constant - half * jnp.log1p(jnp.sum(whitening.whiten(x) ** 2) / dof)

    return Reference(t_sample, t_log_prob)


def diagonal_gaussian_reference(mean: Array, sd: Array) -> Reference:
    """``N(mean, diag(sd^2))``.

    Example:
        >>> q = diagonal_gaussian_reference(jnp.ones(2), jnp.full(2, 2.0))
        >>> round(float(q.log_prob(jnp.ones(2))), 4)  # -log(2 pi) - 2 log 2
        -3.2242
    """
    return whitened_reference(Whitening(jnp.asarray(mean), jnp.asarray(sd)))


def student_t_reference(dim: int, scale: float, dof: float) -> Reference:
    """The multivariate Student-t ``t_dof(0, scale^2 I)`` on R^dim
    (:func:`whitened_reference`).

    Example:
        >>> q = student_t_reference(1, 1.0, 1.0)  # Cauchy: log q(0) = -log(pi)
        >>> round(float(q.log_prob(jnp.zeros(1))), 4)
        -1.1447
    """
    return diagonal_student_t_reference(jnp.zeros(dim), jnp.full(dim, scale), dof)


def diagonal_student_t_reference(mean: Array, scale: Array, dof: float) -> Reference:
    """The multivariate Student-t ``t_dof(mean, diag(scale^2))`` (:func:`whitened_reference`).

    Example:
        >>> q = diagonal_student_t_reference(jnp.ones(1), jnp.full(1, 2.0), 1.0)
        >>> round(float(q.log_prob(jnp.ones(1))), 4)  # Cauchy of scale 2: -log(2 pi)
        -1.8379
    """
    return whitened_reference(Whitening(jnp.asarray(mean), jnp.asarray(scale)), dof)


def moment_matched_reference(
    positions: Array,
    log_weights: Array,
    fallback_scale: Array | float,
    widen: float = 1.0,
    dof: float | None = None,
    whiten: Whiten = moment_whitening,
) -> Reference:
    """The :func:`whitened_reference` of :func:`fitted_whitening`: by default
    ``N(mean, diag (widen sd)^2)`` of weighted particles (normalised ``log_weights``),
    e.g. a pilot run's; with ``whiten=covariance_whitening``, their covariance times
    ``widen^2`` where their correlations are badly conditioned. ``N(0, fallback_scale^2 I)``
    if a moment is not finite or an sd is 0; a Student-t with ``dof``.

    Example:
        >>> x = jnp.array([[0.0, 1.0], [2.0, 1.0]])
        >>> q = moment_matched_reference(x, jnp.log(jnp.full(2, 0.5)), 3.0)
        >>> q.log_prob(jnp.zeros(2)).item()  # sd 0 in the second coordinate: the fallback
        -4.0351...
    """
    fitted = fitted_whitening(positions, log_weights, fallback_scale, widen, whiten)
    return whitened_reference(fitted, dof)


def fitted_whitening(
    positions: Array,
    log_weights: Array,
    fallback_scale: Array | float,
    widen: float = 1.0,
    whiten: Whiten = moment_whitening,
) -> Whitening:
    """``whiten``'s mean and scale (widened by ``widen``) of weighted particles
    (normalised ``log_weights``), or ``(0, fallback_scale)`` if a moment is not finite or
    an sd is 0: the location and scale of :func:`moment_matched_reference`.

    Example:
        >>> from bayeswb.samplers.smc.tuning import covariance_whitening
        >>> t = jnp.linspace(-1.0, 1.0, 50)
        >>> x = jnp.stack([t, t + 0.01 * jnp.sin(40 * t)], axis=1)  # along the diagonal
        >>> w = fitted_whitening(x, jnp.full(50, -jnp.log(50)), 1.0, 2.0, covariance_whitening)
        >>> w.scale.shape, bool(w.scale[1, 0] > 0)  # correlated: a covariance factor
        ((2, 2), True)
    """
    weights = jnp.exp(log_weights)
    mean = weights @ positions
    sd = jnp.sqrt(weights @ (positions - mean) ** 2)
    ok = jnp.all(jnp.isfinite(mean)) & jnp.all(jnp.isfinite(sd) & (sd > 0))
    fitted = whiten(jnp.asarray(0), positions, weights)
    fallback = jnp.broadcast_to(jnp.asarray(fallback_scale, sd.dtype), sd.shape)
    if fitted.scale.ndim == 2:
        fallback = jnp.diag(fallback)
    return Whitening(
        jnp.where(ok, fitted.mean, 0.0), jnp.where(ok, widen * fitted.scale, fallback)
    )
