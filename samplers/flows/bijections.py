"""The radial flow layer of Rezende and Mohamed (2015), which flowjax lacks, and its stack.

Every other bijection of the flow family is flowjax's own (planar, coupling, masked
autoregressive layers, ``Affine``, ``Chain``, ``Scan``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from flowjax.bijections import AbstractBijection, Scan
from flowjax.distributions import Transformed
from jax.typing import ArrayLike

Array = jax.Array


class Radial(AbstractBijection):
    """Radial flow layer (Rezende and Mohamed 2015, eq. 14), which flowjax lacks:

    ``f(z) = z + beta h(alpha, r) (z - z0)``, ``r = |z - z0|``, ``h = 1 / (alpha + r)``,

    with ``alpha = softplus(a) > 0`` and ``beta = -alpha + softplus(b) > -alpha`` so that
    ``f`` is invertible (their appendix A.2). Log-determinant (their eq. 14):
    ``(d - 1) log(1 + beta h) + log(1 + beta h + beta h'(r) r)``, ``h' = -h^2``. The
    inverse is closed-form: ``|f(z) - z0| = r (1 + beta h(r))`` is a quadratic in ``r``.

    Example:
        >>> layer = Radial(jax.random.key(0), dim=2)
        >>> y, log_det = layer.transform_and_log_det(jnp.ones(2))
        >>> bool(jnp.allclose(layer.inverse(y), jnp.ones(2), atol=1e-5))
        True
    """

    shape: tuple[int, ...]
    # equinox's AbstractVar is a plain field to type checkers, so mypy rejects the
    # ClassVar that equinox documents as fulfilling it (as flowjax's own bijections do)
    cond_shape: ClassVar[None] = None  # type: ignore[misc]
    center: Array
    raw_alpha: Array
    raw_beta: Array

    def __init__(self, key: Array, *, dim: int) -> None:
        self.shape = (dim,)
        self.center = 0.5 * jax.random.normal(key, (dim,))
        self.raw_alpha = jnp.asarray(0.5413)  # softplus -> 1
        self.raw_beta = jnp.asarray(0.5413)  # beta = -1 + 1 = 0: the identity

    def _alpha_beta(self) -> tuple[Array, Array]:
        alpha = jax.nn.softplus(self.raw_alpha)
        return alpha, -alpha + jax.nn.softplus(self.raw_beta)

    def _log_det(self, r: Array) -> Array:
        alpha, beta = self._alpha_beta()
        h = 1.0 / (alpha + r)
        return (self.shape[0] - 1) * jnp.log1p(beta * h) + jnp.log1p(beta * h - beta * h**2 * r)

    def transform_and_log_det(
        self, x: ArrayLike, condition: ArrayLike | None = None
    ) -> tuple[Array, Array]:
        x = jnp.asarray(x)
        alpha, beta = self._alpha_beta()
        diff = x - self.center
        r = jnp.sqrt(jnp.sum(diff**2))
        return x + beta / (alpha + r) * diff, self._log_det(r)

    def inverse_and_log_det(
        self, y: ArrayLike, condition: ArrayLike | None = None
    ) -> tuple[Array, Array]:
        alpha, beta = self._alpha_beta()
        diff = y - self.center
        r_y = jnp.sqrt(jnp.sum(diff**2))
        # r^2 + (alpha + beta - r_y) r - alpha r_y = 0, positive root
        b = alpha + beta - r_y
        r = 0.5 * (-b + jnp.sqrt(b**2 + 4.0 * alpha * r_y))
        return self.center + diff / (1.0 + beta / (alpha + r)), -self._log_det(r)


def radial_flow(key: Array, base_dist: Any, flow_layers: int) -> Transformed:
    """A stack of ``flow_layers`` :class:`Radial` layers (flowjax ``Scan``, one compiled
    layer body), applied in the sampling direction as in the paper."""
    layers = eqx.filter_vmap(lambda k: Radial(k, dim=base_dist.shape[-1]))(
        jax.random.split(key, flow_layers)
    )
    return Transformed(base_dist, Scan(layers))
