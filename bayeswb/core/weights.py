"""Log-weight arithmetic shared by the weighted samplers (IS, SMC, flows), in JAX.

Log weights stay logs; NaN means "no mass" and becomes -inf, so a bad log density gives
weight zero, never a NaN estimate.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from blackjax.smc.ess import log_ess

Array = jax.Array


def safe_log_weights(log_weights: Array) -> Array:
    """NaN -> -inf (weight zero); everything else unchanged.

    Example:
        >>> safe_log_weights(jnp.array([0.0, jnp.nan, -jnp.inf])).tolist()
        [0.0, -inf, -inf]
    """
    return jnp.where(jnp.isnan(log_weights), -jnp.inf, log_weights)


def add_log_increment(log_weights: Array, increment: Array) -> Array:
    """``log_weights + increment``, where a particle of weight zero keeps weight zero
    whatever its increment (a move out of a region where the density is zero or NaN gives
    ``-inf + inf``, which would be NaN) and a NaN increment is a weight of zero.

    Example:
        >>> w = add_log_increment(jnp.array([0.0, -jnp.inf, 0.0]),
        ...                       jnp.array([1.0, jnp.inf, jnp.nan]))
        >>> w.tolist()
        [1.0, -inf, -inf]
    """
    total = safe_log_weights(log_weights + increment)
    return jnp.where(log_weights == -jnp.inf, -jnp.inf, total)


def log_mean_exp(log_values: Array, axis: int = -1) -> Array:
    """``log(mean(exp(v)))`` along ``axis``, max-subtracted; all ``-inf`` gives ``-inf``.

    Example:
        >>> float(log_mean_exp(jnp.log(jnp.array([1.0, 3.0]))))  # log 2
        0.6931471...
    """
    n = log_values.shape[axis]
    return jax.scipy.special.logsumexp(log_values, axis=axis) - math.log(n)


def kish_ess(log_weights: Array) -> Array:
    """Kish effective sample size ``(sum w)^2 / sum w^2`` over the last axis (blackjax's
    ``log_ess``, batched); zero when every weight is zero.

    Example:
        >>> kish_ess(jnp.zeros((2, 10))).tolist()
        [10.0, 10.0]
    """
    log_value = jnp.vectorize(log_ess, signature="(n)->()")(log_weights)
    return jnp.where(jnp.isnan(log_value), 0.0, jnp.exp(log_value))
