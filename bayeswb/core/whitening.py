"""Whitened coordinates: ``x = mean + scale z``, with ``scale`` an sd per coordinate or a
lower-triangular factor of a covariance.

The samplers that move or transport in standardised coordinates share this one class:
smc's moves and nrpt's explorer (whitened by their particles,
:mod:`bayeswb.samplers.smc.tuning`), the diffusion samplers and craft (whitened by a
Gaussian pilot, :func:`bayeswb.samplers.importance.pilot.pilot_whitening`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array


class Whitening(NamedTuple):
    """``x = mean + scale z``: ``scale`` is an sd per coordinate (dim,) or a
    lower-triangular factor of a covariance (dim, dim).

    Example:
        >>> w = Whitening(jnp.zeros(2), jnp.array([[2.0, 0.0], [1.0, 1.0]]))
        >>> w.unwhiten(jnp.array([1.0, 1.0])).tolist(), w.whiten(jnp.array([2.0, 2.0])).tolist()
        ([2.0, 2.0], [1.0, 1.0])
        >>> round(float(w.log_jacobian), 4)  # log 2
        0.6931
    """

    mean: Array  # (dim,)
    scale: Array  # (dim,) or (dim, dim)

    def whiten(self, x: Array) -> Array:
        """``z`` of ``x``, one point (dim,) or one per row (n, dim)."""
        if self.scale.ndim == 1:
            return (x - self.mean) / self.scale
        centred = (x - self.mean).T
        return jax.scipy.linalg.solve_triangular(self.scale, centred, lower=True).T

    def unwhiten(self, z: Array) -> Array:
        """``x`` of ``z``, one point (dim,) or one per row (n, dim)."""
        if self.scale.ndim == 1:
            return self.mean + self.scale * z
        return self.mean + z @ self.scale.T

    @property
    def log_jacobian(self) -> Array:
        """``log |dx / dz|``."""
        diagonal = self.scale if self.scale.ndim == 1 else jnp.diagonal(self.scale)
        return jnp.sum(jnp.log(jnp.abs(diagonal)))

    def log_density(self, logdensity_fn: Callable[[Array], Array]) -> Callable[[Array], Array]:
        """The density of z, ``pi(mean + scale z) |scale|`` (the same normalising constant)."""
        return lambda z: logdensity_fn(self.unwhiten(z)) + self.log_jacobian
