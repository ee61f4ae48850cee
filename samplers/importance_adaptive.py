"""Adaptive importance sampling (``amis``) and chi^2 variational importance sampling (``vis``).

Both produce weighted particles, one independent run per chain, with per-run log Z, the
Kish ESS and the PSIS k-hat of the weights in ``path_stats`` (see
:mod:`bayeswb.samplers.importance` for the conventions they share with ``is``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from bayeswb.config import SamplerConfig, boolean, one_of, option, positive, positive_int
from bayeswb.draws import Draws
from bayeswb.driver import run_chains
from bayeswb.samplers import register
from bayeswb.samplers.importance import (
    fit_gaussian_vi,
    gaussian_or_student_t,
    run_with_proposal,
    weighted_output,
)
from bayeswb.target import Target
from bayeswb.weights import kish_ess, safe_log_weights

Array = jax.Array


# --------------------------------------------------------------------------- amis


@dataclasses.dataclass(frozen=True)
class AMISConfig(SamplerConfig):
    """Adaptive multiple importance sampling. ``num_warmup`` is the number of iterations
    T, each drawing ``num_samples / T`` particles (so a run returns ``num_samples``
    weighted particles and costs ``num_samples`` log densities); ``num_samples`` must be a
    multiple of ``num_warmup``."""

    num_warmup: int = option(10, positive_int, "adaptation iterations T")
    proposal_family: str = option(
        "gaussian", one_of("gaussian", "student_t"), "Gaussian or Student-t proposal"
    )
    df: float = option(5.0, positive, "Student-t degrees of freedom")
    init_scale: float = option(3.0, positive, "initial proposal N(0, init_scale^2 I)")
    psis: bool = option(False, boolean, "report Pareto-smoothed log weights")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_samples % self.num_warmup:
            raise ValueError(
                f"num_samples must be a multiple of num_warmup ({self.num_warmup}), "
                f"got {self.num_samples!r}"
            )


def _weighted_moments(positions: Array, log_weights: Array) -> tuple[Array, Array]:
    """Self-normalised weighted mean and covariance of (n, dim) positions."""
    w = jnp.exp(log_weights - jax.scipy.special.logsumexp(log_weights))
    mean = w @ positions
    centred = positions - mean
    return mean, (centred * w[:, None]).T @ centred


@register("amis", AMISConfig, family="importance")
def run_amis(key: Array, target: Target, config: AMISConfig) -> Draws:
    """Adaptive multiple importance sampling (Cornuet, Marin, Mira and Robert 2012,
    "Adaptive multiple importance sampling", Scand. J. Stat. 39, section 2.2).

    Iteration ``t = 0..T-1`` draws ``N = num_samples / T`` particles from
    ``q_t`` (Gaussian or Student-t with location ``mu_t`` and scale ``L_t``), then
    re-weights *every* particle drawn so far with the deterministic-mixture weights
    ``w = pi(x) / ((1 / (t + 1)) sum_{l <= t} q_l(x))`` (their eq. 2, all ``N_l`` equal),
    and sets ``mu_{t+1}``, ``L_{t+1}`` to the weighted mean and covariance of all particles
    (Student-t: scale matrix ``(df - 2) / df`` times the covariance when ``df > 2``). The
    first proposal is ``N(0, init_scale^2 I)`` (a wide start, as in their section 3).
    A non-finite update (all weights zero) keeps the previous proposal, and the proposal
    is only updated once the Kish ESS of all weights reaches ``dim + 1`` (fewer effective
    points give a singular covariance that would collapse every later proposal).

    The mixture weights are consistent but not unbiased: the later proposals depend on
    the particles they re-weight (Cornuet et al. 2012, section 3; Marin, Pudlo and Sedki
    2019, "Consistency of adaptive importance sampling and recycling schemes", Bernoulli
    25(3)), which biases ``log Z`` low by O(1/N); ``is`` and ``vis`` give unbiased
    ``Z``.

    The output is all ``T N`` particles with their final mixture weights; the run's
    ``log Z`` is ``log mean w``. Each iteration's running ``log_z`` and Kish ``ess`` are
    in ``warmup_stats``. Cost: ``num_samples`` log densities per run, no gradients
    (proposal densities are not target evaluations).

    Example:
        >>> import bayeswb as bw
        >>> t = bw.models.get("gaussian", dim=2)
        >>> r = bw.sample(t, "amis", num_chains=4, num_samples=400, num_warmup=4)
        >>> abs(r.log_z - t.log_z) < 5 * r.log_z_se
        True
        >>> r.idata.warmup_sample_stats["ess"].shape
        (4, 4)
    """
    num_iterations = config.num_warmup
    per_iteration = config.num_samples // num_iterations
    dim = target.dim
    student = config.proposal_family == "student_t"
    covariance_to_scale = (config.df - 2.0) / config.df if student and config.df > 2 else 1.0

    def log_prob(loc: Array, scale_tril: Array, x: Array) -> Array:
        distribution = gaussian_or_student_t(loc, scale_tril, config.proposal_family, config.df)
        return distribution.log_prob(x)

    def one_run(run_key: Array) -> tuple:
        iteration_index = jnp.arange(num_iterations)

        def iteration(carry: tuple, inputs: tuple) -> tuple:
            positions, log_p, log_q, locs, trils, loc, tril = carry
            t, step_key = inputs
            distribution = gaussian_or_student_t(loc, tril, config.proposal_family, config.df)
            x = distribution.sample(step_key, (per_iteration,))
            positions = positions.at[t].set(x)
            log_p = log_p.at[t].set(jax.vmap(target.log_density)(x))
            locs, trils = locs.at[t].set(loc), trils.at[t].set(tril)
            # q_l(x) for the new block under all proposals, and q_t at every particle
            row = jax.vmap(lambda m, s: log_prob(m, s, x), out_axes=1)(locs, trils)
            log_q = log_q.at[t].set(row)
            log_q = log_q.at[:, :, t].set(log_prob(loc, tril, positions))
            used = iteration_index <= t
            log_mixture = jax.scipy.special.logsumexp(
                jnp.where(used, log_q, -jnp.inf), axis=-1
            ) - jnp.log(t + 1.0)
            log_w = jnp.where(used[:, None], safe_log_weights(log_p - log_mixture), -jnp.inf)
            mean, covariance = _weighted_moments(positions.reshape(-1, dim), log_w.ravel())
            covariance = 0.5 * (covariance + covariance.T) + 1e-6 * jnp.eye(dim)
            new_tril = jnp.linalg.cholesky(covariance_to_scale * covariance)
            ess = kish_ess(log_w.ravel())
            ok = jnp.all(jnp.isfinite(mean)) & jnp.all(jnp.isfinite(new_tril))
            # a covariance from fewer than dim + 1 effective points is singular in some
            # direction and would collapse every later proposal: keep the old one
            enough = ok & (ess >= dim + 1)
            loc = jnp.where(enough, mean, loc)
            tril = jnp.where(enough, new_tril, tril)
            drawn = (t + 1.0) * per_iteration
            trace = {"log_z": jax.scipy.special.logsumexp(log_w) - jnp.log(drawn), "ess": ess}
            return (positions, log_p, log_q, locs, trils, loc, tril), (log_w, trace)

        loc = jnp.zeros(dim)
        tril = config.init_scale * jnp.eye(dim)
        carry = (
            jnp.zeros((num_iterations, per_iteration, dim)),
            jnp.full((num_iterations, per_iteration), -jnp.inf),
            jnp.full((num_iterations, per_iteration, num_iterations), -jnp.inf),
            jnp.broadcast_to(loc, (num_iterations, dim)),
            jnp.broadcast_to(tril, (num_iterations, dim, dim)),
            loc,
            tril,
        )
        keys = jax.random.split(run_key, num_iterations)
        (positions, log_p, *_), (log_w, trace) = jax.lax.scan(
            iteration, carry, (iteration_index, keys)
        )
        return positions.reshape(-1, dim), log_w[-1].ravel(), log_p.ravel(), trace

    positions, log_weights, log_p, trace = run_chains(key, config.num_chains, one_run)
    log_z, reported, diagnostics = weighted_output(log_weights, config.psis)
    n_evals = config.num_chains * config.num_samples
    return Draws(
        positions=positions,
        stats={"lp": log_p},
        log_weights=reported,
        log_z=log_z,
        warmup_stats=trace,
        path_stats=diagnostics,
        n_grad_evals=0,
        n_logdensity_evals=n_evals,
    )


# --------------------------------------------------------------------------- vis


@dataclasses.dataclass(frozen=True)
class VISConfig(SamplerConfig):
    """Variational importance sampling: fit a Gaussian proposal for ``num_warmup`` Adam
    steps, then importance-sample ``num_samples`` from it, per independent run."""

    num_warmup: int = option(500, positive_int, "Adam steps of the proposal fit")
    divergence: str = option("chi2", one_of("chi2", "kl"), "forward chi^2 or reverse KL fit")
    vi_family: str = option("fullrank", one_of("meanfield", "fullrank"), "Gaussian family")
    learning_rate: float = option(0.01, positive, "Adam learning rate")
    num_mc_samples: int = option(32, positive_int, "draws per objective gradient")
    psis: bool = option(False, boolean, "report Pareto-smoothed log weights")


def _vis_proposal(key: Array, target: Target, config: VISConfig) -> tuple[Any, Any, Any, dict]:
    proposal, curve = fit_gaussian_vi(
        key,
        target,
        config.vi_family,
        config.num_warmup,
        config.learning_rate,
        config.num_mc_samples,
        divergence=config.divergence,
    )
    n_grad = config.num_warmup * config.num_mc_samples
    name = "log_mean_w2" if config.divergence == "chi2" else "elbo"
    return proposal, n_grad, n_grad, {name: curve}


@register("vis", VISConfig, family="importance")
def run_vis(key: Array, target: Target, config: VISConfig) -> Draws:
    """Variational importance sampling with a forward-chi^2 fitted Gaussian proposal (Li,
    Wang, Li and Wu 2024, "Forward chi^2 divergence based variational importance
    sampling", ICLR).

    The proposal ``q = N(mu, L L^T)`` (blackjax's full-rank or mean-field family)
    minimises the forward chi^2 divergence ``chi^2(pi || q) = E_q[w^2] / Z^2 - 1``,
    ``w = pi / q``, which is the proposal's importance-sampling variance of ``Z_hat``:
    the optimised Monte Carlo objective is ``log mean_s w(mu + L eps_s)^2`` over
    ``num_mc_samples`` reparameterised draws (the chi upper bound of Dieng et al. 2017,
    eq. 5, at n = 2), by Adam (see :func:`~bayeswb.samplers.importance.fit_gaussian_vi`).
    ``divergence="kl"`` fits by reverse KL instead (the ELBO), to compare on the same
    target: reverse KL is mode-seeking and under-disperses, forward chi^2 is
    mass-covering, which shows in the PSIS k-hat. Then importance sampling as ``is``;
    the fit's curve is in ``warmup_stats`` (``log_mean_w2`` or ``elbo``).

    Cost: ``num_warmup * num_mc_samples`` gradients per run for the fit, one log density
    per draw.

    Example:
        >>> import bayeswb as bw
        >>> t = bw.models.get("gaussian", dim=2)
        >>> r = bw.sample(t, "vis", num_chains=4, num_samples=200, num_warmup=200)
        >>> abs(r.log_z - t.log_z) < 5 * r.log_z_se
        True
        >>> "log_mean_w2" in r.idata.warmup_sample_stats
        True
    """
    return run_with_proposal(key, target, config, _vis_proposal)
