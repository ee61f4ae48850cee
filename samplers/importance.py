"""Importance sampling with a chosen proposal (``is``), Pareto-smoothed diagnostics.

A *proposal* is any object with ``sample_and_log_prob(key, sample_shape) -> (x, log_q)``,
``x`` of shape ``sample_shape + (dim,)`` and ``log_q`` of shape ``sample_shape``. That is
flowjax's signature, so a flowjax distribution (a trained flow) is a proposal as it is;
numpyro distributions are wrapped by :class:`DistributionProposal`. Proposals are built per
run by a *proposal builder* registered with :func:`register_proposal`, which is the hook
through which a flow module adds ``proposal="flow"`` without touching this file.

Self-normalised importance sampling (Owen, "Monte Carlo theory, methods and examples",
2013, ch. 9, eq. 9.3 and 9.17): with ``x_i ~ q`` and ``log w_i = log pi(x_i) - log q(x_i)``,

- ``Z_hat = (1/n) sum_i w_i`` is unbiased for ``Z`` on the natural scale, so each run
  reports ``log Z_hat`` and ``bw.sample`` pools runs with a standard error;
- ``E_pi[f] ~ sum_i w_i f(x_i) / sum_i w_i``;
- the Kish effective sample size ``(sum w)^2 / sum w^2`` (eq. 9.13).

Pareto-smoothed importance sampling (Vehtari, Simpson, Gelman, Yao and Gabry 2024, "Pareto
smoothed importance sampling", JMLR 25(72)): the shape ``k`` of a generalised Pareto fit to
the largest weights says whether the estimate can be trusted; ``k < 0.7`` is the usual
reading of "reliable" (their section 3). The fit is ArviZ's ``psislw``, which runs in numpy;
:func:`pareto_smooth` calls it through ``jax.pure_callback``, so every ``run`` stays one
jitted program (``bw.sample`` compiles the whole run) and ``k`` lands in the Result.

Log weights stay logs throughout: a NaN or ``-inf`` log density (or proposal density) is a
weight of zero, and a run whose weights are all zero reports ``log Z = -inf``, never NaN.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax
from jax.flatten_util import ravel_pytree

from bayeswb.core.config import (
    SamplerConfig,
    boolean,
    non_negative_int,
    one_of,
    option,
    positive,
    positive_int,
)
from bayeswb.core.draws import Draws
from bayeswb.core.target import Target
from bayeswb.core.weights import kish_ess, log_mean_exp, safe_log_weights
from bayeswb.execution.driver import ChainLayout, run_chains, sample_chain
from bayeswb.samplers import register

Array = jax.Array

RELIABLE_PARETO_K = 0.7


# --------------------------------------------------------------------------- weights


def _psislw_host(log_weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ArviZ's PSIS on the host; rows with no finite weight are returned unchanged."""
    import arviz as az

    log_weights = np.asarray(log_weights)
    dtype = log_weights.dtype
    values = np.asarray(log_weights, dtype=np.float64)
    with warnings.catch_warnings():
        # the k-hat is returned as a number (and read against 0.7 by the caller);
        # ArviZ's warning about large k would only repeat it
        warnings.simplefilter("ignore")
        smoothed, k = az.psislw(values, normalize=False)
    smoothed = np.asarray(smoothed)
    k = np.asarray(k, dtype=np.float64)
    empty = ~np.any(np.isfinite(values), axis=-1)
    smoothed = np.where(empty[..., None], values, smoothed)
    smoothed = np.where(np.isnan(smoothed), -np.inf, smoothed)
    k = np.where(empty, np.inf, k)
    return smoothed.astype(dtype), k.astype(dtype)


def pareto_smooth(log_weights: Array) -> tuple[Array, Array]:
    """PSIS of log weights along the last axis: ``(smoothed log weights, k-hat)``.

    Wraps ``arviz.psislw`` (Vehtari et al. 2024, algorithm 1) with ``normalize=False``,
    so the smoothed weights keep the raw weights' scale; it runs on the host through
    ``jax.pure_callback`` and so may sit inside jitted and vmapped code. Shapes:
    ``(..., n) -> ((..., n), (...))``. ``k < 0.7`` reads as reliable; a row whose weights
    are all zero gets ``k = inf``.

    Example:
        >>> lw = jax.random.normal(jax.random.key(0), (2, 400))
        >>> smoothed, k = jax.jit(pareto_smooth)(lw)
        >>> smoothed.shape, bool(jnp.all(k < 0.7))
        ((2, 400), True)
    """
    shapes = (
        jax.ShapeDtypeStruct(log_weights.shape, log_weights.dtype),
        jax.ShapeDtypeStruct(log_weights.shape[:-1], log_weights.dtype),
    )
    return jax.pure_callback(_psislw_host, shapes, log_weights, vmap_method="broadcast_all")


def weighted_output(log_weights: Array, psis: bool) -> tuple[Array, Array, dict[str, Array]]:
    """Per-run log Z, the log weights to report and the per-run diagnostics.

    ``log_weights`` is (runs, n). ``log Z`` is always the raw, unbiased estimate
    ``log mean w`` per run; with ``psis`` the reported log weights are the smoothed ones
    (lower-variance, slightly biased moments, Vehtari et al. 2024 section 4). The
    diagnostics are ``pareto_k`` and ``ess`` (Kish, of the raw weights), each (runs, 1)
    for ``Draws.path_stats``.
    """
    log_weights = safe_log_weights(log_weights)
    log_z = log_mean_exp(log_weights)
    smoothed, pareto_k = pareto_smooth(log_weights)
    diagnostics = {"pareto_k": pareto_k[:, None], "ess": kish_ess(log_weights)[:, None]}
    return log_z, (smoothed if psis else log_weights), diagnostics


# --------------------------------------------------------------------------- proposals


class DistributionProposal(NamedTuple):
    """A numpyro distribution (event shape ``(dim,)``) as a proposal.

    Example:
        >>> q = DistributionProposal(dist.MultivariateNormal(jnp.zeros(2), jnp.eye(2)))
        >>> x, log_q = q.sample_and_log_prob(jax.random.key(0), (5,))
        >>> x.shape, log_q.shape
        ((5, 2), (5,))
    """

    distribution: dist.Distribution

    def sample_and_log_prob(
        self, key: Array, sample_shape: tuple[int, ...]
    ) -> tuple[Array, Array]:
        x = self.distribution.sample(key, sample_shape)
        return x, self.distribution.log_prob(x)

    def log_prob(self, x: Array) -> Array:
        return self.distribution.log_prob(x)


class FunctionProposal(NamedTuple):
    """A proposal from ``sample(key, n) -> (n, dim)`` and ``log_prob(x) -> scalar``."""

    sample: Callable[[Array, int], Array]
    log_prob: Callable[[Array], Array]

    def sample_and_log_prob(
        self, key: Array, sample_shape: tuple[int, ...]
    ) -> tuple[Array, Array]:
        (n,) = sample_shape
        x = self.sample(key, n)
        return x, jax.vmap(self.log_prob)(x)


def gaussian_or_student_t(
    loc: Array, scale_tril: Array, family: str, df: float
) -> dist.Distribution:
    """``N(loc, L L^T)`` or the multivariate Student-t with ``df`` and scale ``L`` (numpyro)."""
    if family == "student_t":
        return dist.MultivariateStudentT(df, loc, scale_tril=scale_tril)
    return dist.MultivariateNormal(loc, scale_tril=scale_tril)


def importance_sample(
    key: Array, logdensity_fn: Callable[[Array], Array], proposal: Any, num_samples: int
) -> tuple[Array, Array, Array]:
    """Draw ``num_samples`` from ``proposal`` and weight them by ``logdensity_fn``.

    Returns ``(positions (n, dim), log_weights (n,), log pi (n,), log q (n,))``; NaN
    log weights are ``-inf``. ``proposal`` is anything with ``sample_and_log_prob(key,
    sample_shape)`` (a flowjax distribution works unchanged).

    Example:
        >>> q = DistributionProposal(dist.MultivariateNormal(jnp.zeros(2), 4 * jnp.eye(2)))
        >>> x, lw, lp, lq = importance_sample(
        ...     jax.random.key(0), lambda x: -0.5 * x @ x, q, 20000)
        >>> round(float(log_mean_exp(lw)), 1)  # log(2 pi) = 1.84
        1.8
    """
    positions, log_q = proposal.sample_and_log_prob(key, (num_samples,))
    log_p = jax.vmap(logdensity_fn)(positions)
    return positions, safe_log_weights(log_p - log_q), log_p, log_q


# Builders: (key, target, config) -> (proposal, n_grad_evals, n_logdensity_evals, curves)
# where curves is a dict of (num_warmup,) arrays (a fit's loss), traced per run.
ProposalBuilder = Callable[[Array, Target, Any], tuple[Any, Array, Array, dict[str, Array]]]
_PROPOSALS: dict[str, ProposalBuilder] = {}


def register_proposal(name: str, builder: ProposalBuilder) -> None:
    """Make ``proposal=name`` available to ``is``.

    ``builder(key, target, config)`` runs once per independent run inside the jitted
    program and returns ``(proposal, n_grad_evals, n_logdensity_evals, curves)``:
    the proposal object, the exact cost of building it, and a dict of per-step arrays
    of length ``config.num_warmup`` (a training curve) or ``{}``.
    """
    _PROPOSALS[name] = builder


def _known_proposal(value: Any) -> str | None:
    if value in _PROPOSALS:
        return None
    return f"must be one of {', '.join(map(repr, sorted(_PROPOSALS)))}"


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
    covariance = (eigenvectors / eigenvalues) @ eigenvectors.T
    scale_tril = config.proposal_scale * jnp.linalg.cholesky(0.5 * (covariance + covariance.T))
    distribution = gaussian_or_student_t(mode, scale_tril, config.proposal_family, config.df)
    # the Hessian is dim forward-over-reverse Hessian-vector products: dim gradients
    n_grad = evals + target.dim
    return DistributionProposal(distribution), n_grad, n_grad, {}


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
    proposal and the per-step ELBO. (The forward chi^2 fit is
    :func:`bayeswb.samplers.importance_adaptive.fit_gaussian_chi2`.)
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
    n_grad = config.num_warmup * config.num_mc_samples
    return proposal, n_grad, n_grad, {"elbo": elbo}


register_proposal("prior", _prior_proposal)
register_proposal("laplace", _laplace_proposal)
register_proposal("gaussian_vi", _gaussian_vi_proposal)


# --------------------------------------------------------------------------- is


@dataclasses.dataclass(frozen=True)
class ISConfig(SamplerConfig):
    """Importance sampling: ``num_chains`` independent runs of ``num_samples`` weighted
    draws, each with its own proposal fit (``num_warmup`` L-BFGS iterations or Adam steps;
    unused by ``prior``). Options of another proposal are ignored."""

    num_warmup: int = option(100, non_negative_int, "proposal fitting steps")
    proposal: str = option("laplace", _known_proposal, "how the proposal is built")
    proposal_family: str = option(
        "gaussian", one_of("gaussian", "student_t"), "laplace: Gaussian or Student-t"
    )
    df: float = option(5.0, positive, "laplace: Student-t degrees of freedom")
    proposal_scale: float = option(1.0, positive, "laplace: factor on the proposal's scale")
    vi_family: str = option("fullrank", one_of("meanfield", "fullrank"), "gaussian_vi family")
    learning_rate: float = option(0.01, positive, "gaussian_vi: Adam learning rate")
    num_mc_samples: int = option(8, positive_int, "gaussian_vi: draws per ELBO gradient")
    psis: bool = option(False, boolean, "report Pareto-smoothed log weights")
    control_variates: bool = option(
        False, boolean, "store the proposal score for control variates (importance_cv)"
    )


@register("is", ISConfig, family="importance")
def run_is(
    key: Array, target: Target, config: ISConfig, layout: ChainLayout | None = None
) -> Draws:
    """Self-normalised importance sampling (Owen 2013, ch. 9, eq. 9.3, 9.17) with a
    prior, Laplace, Gaussian-VI or registered proposal, and PSIS diagnostics (Vehtari et
    al. 2024).

    Each run fits its own proposal and draws ``num_samples`` from it; its
    ``log Z = log mean w`` is unbiased for ``Z`` on the natural scale, so runs pool into
    ``Result.log_z`` with a standard error. ``path_stats`` holds per run ``pareto_k``
    (``< 0.7`` reliable) and ``ess`` (Kish ESS of the weights); ``stats`` holds ``lp``
    (target log density) and ``log_q``; ``warmup_stats`` the VI ELBO curve.
    ``psis=True`` reports the smoothed log weights (log Z stays the raw estimate).
    ``control_variates=True`` also stores ``stats["proposal_score"]`` (chains, draws, dim),
    ``grad_x log q`` at each draw, for the multiple-expectations estimator with control
    variates (:func:`bayeswb.samplers.importance_cv.control_variate_estimates`).

    Cost: one log density per draw, plus the fit: for ``laplace`` one value-and-gradient
    per L-BFGS line-search step plus one at the start, and ``dim`` gradients for the
    Hessian; for ``gaussian_vi`` ``num_mc_samples`` per Adam step; none for ``prior``.

    Example:
        >>> import bayeswb as bw
        >>> t = bw.models.get("gaussian", dim=2)
        >>> r = bw.sample(t, "is", num_chains=4, num_samples=500, num_warmup=20,
        ...               proposal_family="student_t")
        >>> abs(r.log_z - t.log_z) < 5 * r.log_z_se
        True
        >>> bool((r.idata.path_stats["pareto_k"] < 0.7).all())
        True
    """
    return run_with_proposal(key, target, config, _PROPOSALS[config.proposal], layout)


def run_with_proposal(
    key: Array,
    target: Target,
    config: Any,
    builder: ProposalBuilder,
    layout: ChainLayout | None = None,
) -> Draws:
    """Importance sampling with a proposal from ``builder``, one fit per independent run.

    ``config`` needs ``num_chains``, ``num_samples`` and ``psis`` (and may have
    ``control_variates``: then the proposal needs ``log_prob(x)``, as numpyro-wrapped,
    function and flowjax proposals have); ``builder`` is as in :func:`register_proposal`.
    This is ``is``'s body, shared by ``vis``.
    """
    with_score = getattr(config, "control_variates", False)

    def one_run(run_key: Array) -> tuple:
        fit_key, draw_key = jax.random.split(run_key)
        proposal, n_grad, n_evals, curves = builder(fit_key, target, config)
        positions, log_weights, log_p, log_q = importance_sample(
            draw_key, target.log_density, proposal, config.num_samples
        )
        stats = {"lp": log_p, "log_q": log_q}
        if with_score:
            stats["proposal_score"] = jax.vmap(jax.grad(proposal.log_prob))(positions)
        return positions, log_weights, stats, n_grad, n_evals, curves

    positions, log_weights, stats, n_grad, n_evals, curves = run_chains(
        key, config.num_chains, one_run, layout
    )
    log_z, reported, diagnostics = weighted_output(log_weights, config.psis)
    return Draws(
        positions=positions,
        stats=stats,
        log_weights=reported,
        log_z=log_z,
        warmup_stats=curves,
        path_stats=diagnostics,
        n_grad_evals=jnp.sum(jnp.asarray(n_grad)),
        n_logdensity_evals=jnp.sum(jnp.asarray(n_evals)) + config.num_chains * config.num_samples,
    )
