"""Gaussian proposals fitted to a target by stochastic optimisation, one per divergence.

- :func:`fit_gaussian_vi`: reverse KL (the ELBO), blackjax's mean-field or full-rank VI;
  the ``gaussian_vi`` proposal of ``is`` and ``vis`` with ``divergence="kl"``.
- :func:`fit_gaussian_chi2`: forward chi^2 (Li, Wang, Li and Wu 2024), ``vis``'s default.

Both return the fitted proposal and the per-step curve of their objective.
"""

from __future__ import annotations

from collections.abc import Callable

import blackjax
import jax
import jax.numpy as jnp
import numpyro.distributions as dist
import optax

from bayeswb.core.target import Target
from bayeswb.core.weights import log_mean_exp, safe_log_weights
from bayeswb.execution.driver import sample_chain
from bayeswb.samplers.importance.proposals import DistributionProposal, FunctionProposal

Array = jax.Array


def fit_gaussian_vi(
    key: Array,
    target: Target,
    family: str,
    num_steps: int,
    learning_rate: float,
    num_mc_samples: int,
) -> tuple[FunctionProposal, Array]:
    """Fit blackjax's ``meanfield_vi`` / ``fullrank_vi`` by reverse KL (the ELBO,
    Kucukelbir et al. 2017) with the sticking-the-landing estimator; return it as a
    proposal and the per-step ELBO. (The forward chi^2 fit is :func:`fit_gaussian_chi2`.)
    """
    init_key, fit_key = jax.random.split(key)
    algorithm_family = {"meanfield": blackjax.meanfield_vi, "fullrank": blackjax.fullrank_vi}
    algorithm = algorithm_family[family](
        target.log_density,
        optax.adam(learning_rate),
        num_samples=num_mc_samples,
        objective=blackjax.vi.fullrank_vi.KL(),
        stl_estimator=True,
    )
    # blackjax starts at mean zero and identity covariance whatever the position
    state = algorithm.init(target.init(init_key))
    state, curve = sample_chain(
        fit_key, algorithm.step, state, num_steps, lambda s, info: -info.elbo
    )
    if family == "meanfield":
        log_prob = blackjax.vi.meanfield_vi.generate_meanfield_logdensity(state.mu, state.rho)
    else:
        log_prob = blackjax.vi.fullrank_vi.generate_fullrank_logdensity(
            state.mu, state.chol_params
        )
    proposal = FunctionProposal(lambda k, n: algorithm.sample(k, state, n), log_prob)
    return proposal, curve


def fit_gaussian_chi2(
    key: Array,
    target: Target,
    family: str,
    num_steps: int,
    learning_rate: float,
    num_mc_samples: int,
    init_scale: Array | float = 1.0,
) -> tuple[DistributionProposal, Array]:
    """Fit ``q = N(mu, L L^T)`` (``L`` lower-triangular, or diagonal for ``meanfield``) by
    minimising the forward chi^2 divergence in log space, ``log E_q[w^2]``, ``w = pi / q``,
    with the score-function gradient of Li, Wang, Li and Wu (2024, section 3):
    ``grad log E_q[w^2] = -E_q[w^2 grad log q] / E_q[w^2]``, estimated self-normalised
    from ``num_mc_samples`` draws of the current ``q`` (weights ``softmax(2 log w)``), by
    Adam from ``N(0, init_scale^2 I)``.

    The self-normalised score gradient is a weighted maximum-likelihood step towards the
    draws with large ``w^2``, so it moves ``q`` onto the target's mass. The pathwise
    (reparameterised) gradient of ``log mean w^2`` does not: where ``q`` misses mass its
    draws see small weights, and following them moves ``q`` further away (``log mean w^2``
    falls without bound, as a run of blackjax's Renyi objective at ``alpha = -1`` did on a
    correlated 2-d Gaussian). Returns the proposal and the per-step ``log mean w^2`` (an
    estimate of ``2 log Z + log(1 + chi^2)``).
    """
    dim = target.dim
    params = {"mu": jnp.zeros(dim), "log_diag": jnp.full(dim, jnp.log(init_scale))}
    if family == "fullrank":
        params["off_diag"] = jnp.zeros((dim, dim))

    def distribution(p: dict) -> dist.Distribution:
        scale_tril = jnp.diag(jnp.exp(p["log_diag"]))
        if "off_diag" in p:
            scale_tril = scale_tril + jnp.tril(p["off_diag"], -1)
        return dist.MultivariateNormal(p["mu"], scale_tril=scale_tril)

    params, curve = fit_chi2(
        key, target, params, distribution, num_steps, learning_rate, num_mc_samples
    )
    return DistributionProposal(distribution(params)), curve


def fit_chi2(
    key: Array,
    target: Target,
    params: dict,
    distribution: Callable[[dict], dist.Distribution],
    num_steps: int,
    learning_rate: float,
    num_mc_samples: int,
) -> tuple[dict, Array]:
    """``(params, curve)``: ``num_steps`` Adam steps on ``params`` of ``q =
    distribution(params)`` by the self-normalised score gradient of the forward chi^2
    (see :func:`fit_gaussian_chi2`); ``curve`` is ``log mean w^2`` per step. One
    ``lax.scan``; ``num_mc_samples`` target densities per step.
    """
    optimizer = optax.adam(learning_rate)

    def step(carry: tuple, step_key: Array) -> tuple:
        p, opt_state = carry
        x = jax.lax.stop_gradient(distribution(p).sample(step_key, (num_mc_samples,)))
        log_w = safe_log_weights(jax.vmap(target.log_density)(x) - distribution(p).log_prob(x))
        weights = jax.lax.stop_gradient(jax.nn.softmax(2.0 * log_w))
        weights = jnp.where(jnp.isfinite(weights), weights, 0.0)

        def surrogate(p: dict) -> Array:
            return -weights @ distribution(p).log_prob(x)

        grads = jax.grad(surrogate)(p)
        updates, opt_state = optimizer.update(grads, opt_state, p)
        return (optax.apply_updates(p, updates), opt_state), log_mean_exp(2.0 * log_w)

    keys = jax.random.split(key, num_steps)
    curve: Array
    (params, _), curve = jax.lax.scan(step, (params, optimizer.init(params)), keys)
    return params, curve
