"""Resampling parts: ``(key, positions, log_weights, ess) -> Resampled``.

:func:`ess_resampling` resamples N particles when the ESS falls below a threshold (smc,
smc_langevin), :func:`no_resampling` never does (AIS), :func:`waste_free_resampling`
always draws M < N particles to start M chains from (Dau and Chopin 2022, Algorithm 2;
:func:`~.mutation.keep_all` then keeps every state of each chain). Schemes are blackjax's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from blackjax.smc import resampling as blackjax_resampling

Array = jax.Array

RESAMPLING_SCHEMES = {
    "systematic": blackjax_resampling.systematic,
    "stratified": blackjax_resampling.stratified,
    "multinomial": blackjax_resampling.multinomial,
    "residual": blackjax_resampling.residual,
}


class Resampled(NamedTuple):
    """The particles to be moved: positions, their normalised log weights, whether they
    were resampled and each one's parent (its row before resampling)."""

    positions: Array
    log_weights: Array
    resampled: Array
    parents: Array


Resample = Callable[[Array, Array, Array, Array], Resampled]


def ess_resampling(scheme: str, ess_threshold: float) -> Resample:
    """Resample all N particles with ``scheme`` when ``ess < ess_threshold * N``.

    Example:
        >>> resample = ess_resampling("systematic", 0.5)
        >>> x, log_w = jnp.arange(4.0)[:, None], jnp.log(jnp.array([0.7, 0.1, 0.1, 0.1]))
        >>> out = resample(jax.random.key(0), x, log_w, jnp.array(1.9))
        >>> bool(out.resampled), jnp.exp(out.log_weights).tolist()
        (True, [0.25, 0.25, 0.25, 0.25])
    """

    def resample(key: Array, positions: Array, log_weights: Array, ess: Array) -> Resampled:
        n = log_weights.shape[0]
        resampled = ess < ess_threshold * n
        ancestors = RESAMPLING_SCHEMES[scheme](key, jnp.exp(log_weights), n)
        parents = jnp.where(resampled, ancestors, jnp.arange(n))
        log_weights = jnp.where(resampled, -math.log(n), log_weights)
        return Resampled(positions[parents], log_weights, resampled, parents)

    return resample


def no_resampling(key: Array, positions: Array, log_weights: Array, ess: Array) -> Resampled:
    """Keep the particles and weights as they are (annealed importance sampling)."""
    return Resampled(positions, log_weights, jnp.array(False), jnp.arange(log_weights.shape[0]))


def waste_free_resampling(scheme: str, num_chains: int) -> Resample:
    """Always draw ``num_chains`` = M particles with ``scheme``, equally weighted: the
    starts of waste-free SMC's M chains (Dau and Chopin 2022, Algorithm 2).

    Example:
        >>> resample = waste_free_resampling("multinomial", 2)
        >>> out = resample(jax.random.key(0), jnp.arange(4.0)[:, None],
        ...                jnp.log(jnp.full(4, 0.25)), jnp.array(4.0))
        >>> out.positions.shape, bool(out.resampled)
        ((2, 1), True)
    """

    def resample(key: Array, positions: Array, log_weights: Array, ess: Array) -> Resampled:
        ancestors = RESAMPLING_SCHEMES[scheme](key, jnp.exp(log_weights), num_chains)
        log_weights = jnp.full(num_chains, -math.log(num_chains))
        return Resampled(positions[ancestors], log_weights, jnp.array(True), ancestors)

    return resample
