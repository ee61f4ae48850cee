"""The proposals ``is`` offers out of the box: ``prior``, ``laplace`` and ``gaussian_vi``.

Each is a proposal builder (see :func:`bayeswb.samplers.importance.proposals.register_proposal`),
registered on import: ``builder(key, target, config) -> (proposal, n_grad_evals,
n_logdensity_evals, curves)`` with the exact cost of the fit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from bayeswb.core.draws import Count
from bayeswb.core.target import Target
from bayeswb.samplers.importance.gaussian_fits import fit_gaussian_vi
from bayeswb.samplers.importance.proposals import (
    DistributionProposal,
    FunctionProposal,
    gaussian_or_student_t,
    register_proposal,
)

Array = jax.Array


def _prior_proposal(key: Array, target: Target, config: Any) -> tuple[Any, Any, Any, dict]:
    """The prior of a numpyro model, pushed to the target's unconstrained space.

    Draws come from ``numpyro.infer.Predictive`` (ancestral sampling of the latent sites)
    and are mapped to unconstrained space by ``numpyro.infer.util.unconstrain_fn`` (the
    same biject_to transforms ``initialize_model`` uses for the target). The density of
    the pushed-forward prior is minus numpyro's ``potential_energy`` of the model with its
    observed sites hidden (``handlers.block`` by site name), which includes the
    log-Jacobian, so
    ``log w = log pi(x) - log q(x)`` is the log likelihood at the draw.
    """
    from numpyro import handlers
    from numpyro.infer import Predictive
    from numpyro.infer.util import potential_energy, unconstrain_fn

    if target.numpyro is None:
        raise ValueError(
            "proposal 'prior' needs a numpyro target (Target.from_numpyro: the model and the "
            f"data it is called with); target {target.name!r} is not one"
        )
    model, args, kwargs, unravel = target.numpyro
    # hide the model's own observed sites by name: a predicate on "is_observed" would
    # also hide the log-Jacobian factors potential_energy adds (factors are observed sites)
    model_trace = handlers.trace(handlers.seed(model, 0)).get_trace(*args, **kwargs)
    observed = {
        name
        for name, site in model_trace.items()
        if site["type"] == "sample" and site["is_observed"]
    }
    prior_model = handlers.block(model, hide_fn=lambda site: site["name"] in observed)
    names = list(unravel(jnp.zeros(target.dim)))

    def sample(sample_key: Array, n: int) -> Array:
        constrained = Predictive(model, num_samples=n, return_sites=names)(
            sample_key, *args, **kwargs
        )

        def flatten(params: dict[str, Array]) -> Array:
            return ravel_pytree(unconstrain_fn(model, args, kwargs, params))[0]

        return jax.vmap(flatten)(constrained)

    def log_prob(x: Array) -> Array:
        return -potential_energy(prior_model, args, kwargs, unravel(x))

    return FunctionProposal(sample, log_prob), 0, 0, {}


def _lbfgs_mode(
    logdensity_fn: Callable[[Array], Array], x0: Array, max_iterations: int
) -> tuple[Array, Array]:
    """Maximise ``logdensity_fn`` with optax's L-BFGS (zoom line search).

    Stops when the gradient's largest entry is below ``1e-5 (1 + |f|)`` or after
    ``max_iterations``. Returns the mode and the exact number of value-and-gradient
    evaluations: one at the start plus one per line-search step (optax reuses the
    accepted point's value and gradient through ``value_and_grad_from_state``).
    """
    loss = lambda x: -logdensity_fn(x)  # noqa: E731
    optimizer = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(loss)

    def not_done(carry: tuple) -> Array:
        _, state, iteration, _ = carry
        grad = optax.tree.get(state, "grad")
        value = optax.tree.get(state, "value")
        converged = jnp.max(jnp.abs(grad)) < 1e-5 * (1.0 + jnp.abs(value))
        return (iteration < max_iterations) & ~(converged & (iteration > 0))

    def step(carry: tuple) -> tuple:
        x, state, iteration, evals = carry
        value, grad = value_and_grad(x, state=state)
        updates, state = optimizer.update(grad, state, x, value=value, grad=grad, value_fn=loss)
        evals = evals + optax.tree.get(state, "num_linesearch_steps")
        return optax.apply_updates(x, updates), state, iteration + 1, evals

    carry = (x0, optimizer.init(x0), jnp.asarray(0), jnp.asarray(1))
    x, _, _, evals = jax.lax.while_loop(not_done, step, carry)
    return x, evals


def _laplace_proposal(key: Array, target: Target, config: Any) -> tuple[Any, Any, Any, dict]:
    """Laplace approximation: L-BFGS mode, covariance ``(-Hessian)^{-1}`` (``jax.hessian``).

    Eigenvalues of the negative Hessian are floored at ``1e-8`` times the largest, so a
    saddle or flat direction gets a wide (safe) proposal rather than a NaN. The scale is
    multiplied by ``proposal_scale``; ``proposal_family="student_t"`` uses the same
    location and scale matrix with ``df`` degrees of freedom.
    """
    if config.num_warmup < 1:
        raise ValueError("num_warmup must be a positive integer for proposal 'laplace', got 0")
    mode, evals = _lbfgs_mode(target.log_density, target.init(key), config.num_warmup)
    hessian = jax.hessian(target.log_density)(mode)
    precision = -0.5 * (hessian + hessian.T)
    eigenvalues, eigenvectors = jnp.linalg.eigh(precision)
    floor = 1e-8 * jnp.maximum(jnp.max(jnp.abs(eigenvalues)), 1e-30)
    eigenvalues = jnp.maximum(eigenvalues, floor)
    scale_tril = config.proposal_scale * covariance_cholesky(eigenvalues, eigenvectors)
    distribution = gaussian_or_student_t(mode, scale_tril, config.proposal_family, config.df)
    # the Hessian is dim forward-over-reverse Hessian-vector products: dim gradients (one
    # run's count, at most num_warmup iterations of line searches: int32 holds it)
    n_grad = evals + target.dim
    return DistributionProposal(distribution), n_grad, n_grad, {}


def covariance_cholesky(precision_eigenvalues: Array, eigenvectors: Array) -> Array:
    """The lower Cholesky factor of the covariance ``V diag(1 / lambda) V^T`` from the
    precision's eigendecomposition, by a QR decomposition of its square root
    ``diag(lambda^-1/2) V^T`` (``A^T A = R^T R``), never forming the covariance: with
    eigenvalues 1e8 apart (a flat direction floored), the Cholesky of the formed matrix is
    NaN in float32.

    Example:
        >>> lam, vec = jnp.array([1e-8, 4.0]), jnp.eye(2)
        >>> [round(float(v), 2) for v in jnp.diag(covariance_cholesky(lam, vec))]
        [10000.0, 0.5]
    """
    root = eigenvectors.T / jnp.sqrt(precision_eigenvalues)[:, None]
    upper = jnp.linalg.qr(root, mode="r")
    signs = jnp.where(jnp.diag(upper) < 0, -1.0, 1.0).astype(upper.dtype)
    return (upper * signs[:, None]).T


def _gaussian_vi_proposal(key: Array, target: Target, config: Any) -> tuple[Any, Any, Any, dict]:
    """blackjax Gaussian VI (reverse KL) fitted for ``num_warmup`` Adam steps."""
    if config.num_warmup < 1:
        raise ValueError("num_warmup must be a positive integer for proposal 'gaussian_vi', got 0")
    proposal, elbo = fit_gaussian_vi(
        key,
        target,
        config.vi_family,
        config.num_warmup,
        config.learning_rate,
        config.num_mc_samples,
    )
    n_grad = Count.of(config.num_warmup * config.num_mc_samples)  # static: exact at any size
    return proposal, n_grad, n_grad, {"elbo": elbo}


register_proposal("prior", _prior_proposal)
register_proposal("laplace", _laplace_proposal)
register_proposal("gaussian_vi", _gaussian_vi_proposal)
