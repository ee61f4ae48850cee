"""Gaussian and Student-t mixture proposals and their importance-weighted EM update (amis).

Densities use :mod:`bayeswb.samplers.importance.plain_linalg` rather than LAPACK (see
there why); numpyro's ``MixtureSameFamily`` is only used to draw.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpyro.distributions as dist

from bayeswb.core.weights import kish_ess, safe_log_weights
from bayeswb.samplers.importance.plain_linalg import cholesky_lower, solve_lower
from bayeswb.samplers.importance.proposals import gaussian_or_student_t

Array = jax.Array


class MixtureParams(NamedTuple):
    """A K-component Gaussian or Student-t mixture: weights (K,), locs (K, d), trils (K, d, d)."""

    weights: Array
    locs: Array
    trils: Array


def mixture_distribution(params: MixtureParams, family: str, df: float) -> dist.Distribution:
    """The numpyro mixture of ``params`` (``MixtureSameFamily``); amis only samples from it
    (its densities are :func:`mixture_component_log_probs`, see there why)."""
    components = gaussian_or_student_t(params.locs, params.trils, family, df)
    return dist.MixtureSameFamily(dist.Categorical(probs=params.weights), components)


def mixture_component_log_probs(params: MixtureParams, family: str, df: float, x: Array) -> Array:
    """``log a_k + log q_k(x)`` for each component (numpyro's ``component_log_probs`` of
    :func:`mixture_distribution`, the same formulas with :func:`solve_lower` in place of
    LAPACK); x (n, d) -> (n, K). Gaussian: ``-|z|^2 / 2 - sum log diag L - d/2 log 2 pi``;
    Student-t: ``log G((df + d)/2) - log G(df/2) - d/2 log(df pi) - sum log diag L -
    (df + d)/2 log(1 + |z|^2 / df)``, with ``z = L^{-1}(x - mu)``.
    """
    dim = x.shape[-1]

    def one(loc: Array, tril: Array) -> Array:
        z = solve_lower(tril, (x - loc).T)  # (d, n)
        mahalanobis = jnp.sum(z**2, axis=0)
        half_log_det = jnp.sum(jnp.log(jnp.diagonal(tril)))
        if family == "student_t":
            gammaln = jax.scipy.special.gammaln
            norm = gammaln(0.5 * (df + dim)) - gammaln(0.5 * df) - 0.5 * dim * jnp.log(df * jnp.pi)
            return norm - half_log_det - 0.5 * (df + dim) * jnp.log1p(mahalanobis / df)
        return -0.5 * mahalanobis - half_log_det - 0.5 * dim * jnp.log(2.0 * jnp.pi)

    return jnp.log(params.weights) + jax.vmap(one, out_axes=1)(params.locs, params.trils)


def mixture_log_prob(params: MixtureParams, family: str, df: float, x: Array) -> Array:
    """``log q(x)`` of the mixture ``params``; x (n, d) -> (n,).

    Example:
        >>> p = MixtureParams(jnp.ones(1), jnp.zeros((1, 2)), jnp.eye(2)[None])
        >>> round(float(mixture_log_prob(p, "gaussian", 5.0, jnp.zeros((1, 2)))[0]), 4)
        -1.8379
    """
    return jax.scipy.special.logsumexp(mixture_component_log_probs(params, family, df, x), axis=-1)


def em_update(
    params: MixtureParams, positions: Array, log_weights: Array, family: str, df: float
) -> tuple[MixtureParams, Array]:
    """One importance-weighted EM step of a mixture proposal (Cappe, Douc, Guillin, Marin and
    Robert 2008, "Adaptive importance sampling in general mixture classes", Stat. Comput.
    18, section 3: the M-PMC updates with Rao-Blackwellised responsibilities).

    With normalised weights ``wbar_i`` and responsibilities ``rho_ik = a_k q_k(x_i) /
    q(x_i)`` under the current mixture: ``a_k = sum_i wbar_i rho_ik``, ``mu_k`` and
    ``Sigma_k`` the ``wbar rho_k``-weighted mean and covariance (a Student-t component's
    scale matrix is ``(df - 2) / df Sigma_k``, moment matching, when ``df > 2``). A
    component is only moved when the Kish ESS of its weights ``wbar rho_k`` reaches
    ``dim + 1`` (fewer effective points give a singular covariance that would collapse it);
    returns the new parameters and the ESS of ``wbar``. Shapes: positions (n, d),
    log_weights (n,).
    """
    dim = positions.shape[-1]
    log_weights = safe_log_weights(log_weights)
    wbar = jnp.exp(log_weights - jax.scipy.special.logsumexp(log_weights))
    wbar = jnp.where(jnp.isfinite(wbar), wbar, 0.0)
    component_log_q = mixture_component_log_probs(params, family, df, positions)
    responsibilities = jax.nn.softmax(component_log_q, axis=-1)  # (n, K)
    resp_weights = wbar[:, None] * responsibilities  # (n, K)
    mass = jnp.sum(resp_weights, axis=0)  # (K,)
    component_ess = mass**2 / jnp.maximum(jnp.sum(resp_weights**2, axis=0), 1e-300)
    safe_mass = jnp.maximum(mass, 1e-300)
    # elementwise sums rather than batched dots (small sizes)
    locs = jnp.sum(resp_weights.T[:, :, None] * positions[None], axis=1) / safe_mass[:, None]
    centred = positions[None] - locs[:, None]  # (K, n, d)
    weighted = resp_weights.T[:, :, None] * centred
    covariances = jnp.sum(weighted[..., :, None] * centred[..., None, :], axis=1)
    covariances = covariances / safe_mass[:, None, None]
    covariances = 0.5 * (covariances + jnp.swapaxes(covariances, -1, -2)) + 1e-6 * jnp.eye(dim)
    to_scale = (df - 2.0) / df if family == "student_t" and df > 2 else 1.0
    trils = jax.vmap(cholesky_lower)(to_scale * covariances)
    finite = jnp.all(jnp.isfinite(locs), axis=-1) & jnp.all(jnp.isfinite(trils), axis=(-2, -1))
    move = finite & (component_ess >= dim + 1)
    ess = kish_ess(log_weights)
    update_weights = jnp.all(jnp.isfinite(mass)) & (ess >= dim + 1)
    weights = jnp.where(update_weights, jnp.maximum(mass, 1e-3), params.weights)
    new = MixtureParams(
        weights / jnp.sum(weights),
        jnp.where(move[:, None], locs, params.locs),
        jnp.where(move[:, None, None], trils, params.trils),
    )
    return new, ess
