"""A ray probe of a log density's reach: how far from the origin its mass extends,
read off the density alone. The SMC family's automatic reference starts there
(:mod:`bayeswb.samplers.smc.references`), and the verdict's peak search climbs from
points at that scale (:mod:`bayeswb.execution.peak_search`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array

# the ray probe of :func:`probe_scale`: radii 2^-4 ... 2^12 in steps of sqrt(2)
PROBE_RADII = tuple(2.0 ** (k / 2) for k in range(-8, 25))
PROBE_DIRECTIONS = 64


def probe_scale(key: Array, logdensity_fn: Callable[[Array], Array], dim: int) -> Array:
    """A Gaussian reference scale wide enough for the target, read off its density along
    ``PROBE_DIRECTIONS`` random rays from the origin at the radii ``PROBE_RADII``
    (``len(PROBE_RADII) * PROBE_DIRECTIONS + 1`` log-density evaluations).

    Let ``L*`` be the largest log density seen (the origin included) and
    ``tau = dim / 2 + 3 sqrt(dim / 2)``, the mean plus three sd of ``chi^2_dim / 2``: a
    Gaussian's typical set lies within ``tau`` of its maximum. ``R`` is the largest radius
    at which some ray is within ``tau`` of ``L*`` (the reach of the target's mass seen
    from the origin, every mode the rays pass included), and the scale is
    ``2 R / sqrt(dim)``: ``R / sqrt(dim)`` is the sd of a Gaussian whose typical set
    reaches ``R``, doubled so that the reference is wider than the target (then
    ``q^(1 - beta)`` never confines the tempered path). 1 if nothing is finite.

    Example:
        >>> s = probe_scale(jax.random.key(0), lambda x: -0.5 * jnp.sum((x / 3) ** 2), 4)
        >>> 3.0 < float(s) < 12.0
        True
    """
    lp = jax.vmap(jax.vmap(logdensity_fn))(probe_points(key, dim))
    return scale_from_probe(lp, logdensity_fn(jnp.zeros(dim)), dim)


def probe_points(key: Array, dim: int) -> Array:
    """The probe's points: ``PROBE_DIRECTIONS`` random unit directions at each radius of
    ``PROBE_RADII``, shape ``(radii, directions, dim)``."""
    directions = jax.random.normal(key, (PROBE_DIRECTIONS, dim))
    directions = directions / jnp.linalg.norm(directions, axis=-1, keepdims=True)
    return jnp.asarray(PROBE_RADII)[:, None, None] * directions[None]


def scale_from_probe(lp: Array, origin_lp: Array, dim: int) -> Array:
    """:func:`probe_scale` from the log densities ``lp`` at :func:`probe_points` and
    ``origin_lp`` at the origin (NaN taken as -inf)."""
    lp = jnp.where(jnp.isnan(lp), -jnp.inf, lp)
    best_per_radius = jnp.max(lp, axis=1)
    top = jnp.maximum(jnp.max(best_per_radius), origin_lp)
    tau = dim / 2 + 3.0 * math.sqrt(dim / 2)
    within = jnp.isfinite(best_per_radius) & (best_per_radius >= top - tau)
    reach = jnp.max(jnp.where(within, jnp.asarray(PROBE_RADII), 0.0))
    scale = scale_for_reach(reach, dim)
    return jnp.where(jnp.isfinite(top) & (scale > 0), scale, 1.0)


def scale_for_reach(reach: Any, dim: int) -> Any:
    """The reference scale whose typical set reaches ``reach`` from the origin, doubled:
    ``2 reach / sqrt(dim)`` (see :func:`probe_scale`). Floats or arrays.

    Example:
        >>> scale_for_reach(35.0, 2)
        49.49747468305832
    """
    return 2.0 * reach / math.sqrt(dim)


def probe_evaluations() -> int:
    """Log-density evaluations of one :func:`probe_scale`."""
    return len(PROBE_RADII) * PROBE_DIRECTIONS + 1
