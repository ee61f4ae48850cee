"""The proposals ``is`` offers out of the box: ``prior``, ``laplace`` and ``gaussian_vi``.

Each is a proposal builder (see :func:`bayeswb.samplers.importance.proposals.register_proposal`),
registered on import: ``builder(key, target, config) -> (proposal, n_grad_evals,
n_logdensity_evals, curves)`` with the exact cost of the fit.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from bayeswb.core.climb import lbfgs_climb
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

# the Laplace fit's mode search has converged when the Newton step left is shorter than
# this many of the fit's standard deviations (the Newton decrement)
MODE_TOLERANCE = 0.1


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


def _laplace_proposal(key: Array, target: Target, config: Any) -> tuple[Any, Any, Any, dict]:
    """Laplace approximation: L-BFGS mode (:func:`bayeswb.core.climb.lbfgs_climb`),
    covariance ``(-Hessian)^{-1}`` (``jax.hessian``).

    Eigenvalues of the negative Hessian are floored at ``1e-8`` times the largest, so a
    saddle or flat direction gets a wide (safe) proposal rather than a NaN. The scale is
    multiplied by ``proposal_scale``; ``proposal_family="student_t"`` uses the same
    location and scale matrix with ``df`` degrees of freedom.

    Whether the search found a mode is recorded per run (``training_converged``, read by the
    verdict's ``training`` check): the Newton decrement ``lambda = sqrt(g^T (-H)^{-1} g)`` at the
    point found, the length of the Newton step in the fit's own standard deviations (Boyd and
    Vandenberghe 2004, section 9.5.1), is below ``MODE_TOLERANCE``, and the Hessian there is
    negative definite. Affine-invariant, the test does not depend on the density's scale or on
    float32 gradients reaching a fixed tolerance; where the density has no maximum
    (eight_schools_centered: it grows without bound as the scale goes to 0) the search stops far
    from any stationary point and lambda is large.
    """
    if config.num_warmup < 1:
        raise ValueError("num_warmup must be a positive integer for proposal 'laplace', got 0")
    # the highest point reached: where the density has no mode (it grows without bound)
    # this is a finite point deep in the growth, whose narrow fit the weights then flag
    climb = lbfgs_climb(target.log_density, target.init(key), config.num_warmup)
    mode, evals = climb.where, climb.evaluations
    hessian = jax.hessian(target.log_density)(mode)
    precision = -0.5 * (hessian + hessian.T)
    eigenvalues, eigenvectors = jnp.linalg.eigh(precision)
    floor = 1e-8 * jnp.maximum(jnp.max(jnp.abs(eigenvalues)), 1e-30)
    # a mode: the Hessian negative definite and the Newton step left short
    curved = jnp.all(eigenvalues > floor)
    eigenvalues = jnp.maximum(eigenvalues, floor)
    rotated_gradient = eigenvectors.T @ climb.gradient
    newton_decrement = jnp.sqrt(jnp.sum(rotated_gradient**2 / eigenvalues))
    scale_tril = config.proposal_scale * covariance_cholesky(eigenvalues, eigenvectors)
    distribution = gaussian_or_student_t(mode, scale_tril, config.proposal_family, config.df)
    # the Hessian is dim forward-over-reverse Hessian-vector products: dim gradients (the
    # decrement's gradient is the climb's own; one run's count, at most num_warmup
    # iterations of line searches: int32 holds it)
    n_grad = evals + target.dim
    # per run, as the flows record theirs: the verdict's ``training`` check reads it
    fit = {"training_converged": (curved & (newton_decrement < MODE_TOLERANCE))[None]}
    return DistributionProposal(distribution), n_grad, n_grad, fit


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
