"""Synthetic targets with exact answers: log Z, exact samples and exact moments."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from bayeswb.models import register
from bayeswb.target import Reference, Target

Array = jax.Array


def _check_dim(dim: object, minimum: int = 1) -> None:
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < minimum:
        raise ValueError(f"dim must be an integer >= {minimum}, got {dim!r}")


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")


@register("gaussian")
def gaussian(dim: int = 10, condition_number: float = 10.0) -> Target:
    """Zero-mean Gaussian with diagonal covariance, variances log-spaced in
    ``[1/condition_number, 1]`` (so the covariance has that condition number).

    The log density is left unnormalised, ``-x^T S^{-1} x / 2``, so
    ``log Z = dim/2 log(2 pi) + log det(S)/2`` exactly.

    Example:
        >>> t = gaussian(dim=2, condition_number=4.0)
        >>> [round(float(s), 3) for s in t.reference.sd["x"]]
        [0.5, 1.0]
    """
    _check_dim(dim)
    _check_positive("condition_number", condition_number)
    if condition_number < 1:
        raise ValueError(f"condition_number must be >= 1, got {condition_number!r}")
    variances = np.logspace(-math.log10(condition_number), 0.0, dim) if dim > 1 else np.ones(1)
    scales = jnp.asarray(np.sqrt(variances))

    def log_density(x: Array) -> Array:
        return -0.5 * jnp.sum((x / scales) ** 2)

    def sample_exact(key: Array, n: int) -> Array:
        return scales * jax.random.normal(key, (n, dim))

    log_z = 0.5 * dim * math.log(2 * math.pi) + float(np.sum(np.log(np.sqrt(variances))))
    return Target.from_logdensity(
        log_density,
        dim,
        name="gaussian",
        log_z=log_z,
        sample_exact=sample_exact,
        reference=Reference(
            mean={"x": np.zeros(dim)}, sd={"x": np.sqrt(variances)}, source="exact"
        ),
        metadata={"params": {"dim": dim, "condition_number": condition_number}},
    )


@register("funnel")
def funnel(dim: int = 10, scale: float = 3.0) -> Target:
    """Neal's funnel (Neal 2003, "Slice sampling", section 8): ``v ~ N(0, scale^2)`` and
    ``x_i | v ~ N(0, exp(v))`` for ``i = 1..dim-1``; x = (v, x_1, ..., x_{dim-1}).

    Normalised, so ``log Z = 0``; exact samples by ancestral sampling. Exact moments:
    ``sd(v) = scale``, ``sd(x_i) = exp(scale^2 / 4)`` (since ``E exp(v) = exp(scale^2/2)``).
    Scale 3 is Neal's; the scale-1 version found in some papers is a much easier target.

    Example:
        >>> t = funnel(dim=3)
        >>> float(t.reference.sd["x"][0])
        3.0
    """
    _check_dim(dim, minimum=2)
    _check_positive("scale", scale)

    def log_density(x: Array) -> Array:
        v, rest = x[0], x[1:]
        log_p_v = -0.5 * (v / scale) ** 2 - math.log(scale) - 0.5 * math.log(2 * math.pi)
        log_p_rest = -0.5 * jnp.sum(rest**2) * jnp.exp(-v) - 0.5 * (dim - 1) * (
            v + math.log(2 * math.pi)
        )
        return log_p_v + log_p_rest

    def sample_exact(key: Array, n: int) -> Array:
        key_v, key_x = jax.random.split(key)
        v = scale * jax.random.normal(key_v, (n, 1))
        rest = jnp.exp(v / 2) * jax.random.normal(key_x, (n, dim - 1))
        return jnp.concatenate([v, rest], axis=1)

    sd = np.full(dim, math.exp(scale**2 / 4))
    sd[0] = scale
    return Target.from_logdensity(
        log_density,
        dim,
        name="funnel",
        log_z=0.0,
        sample_exact=sample_exact,
        reference=Reference(mean={"x": np.zeros(dim)}, sd={"x": sd}, source="exact"),
        metadata={"params": {"dim": dim, "scale": scale}},
    )
