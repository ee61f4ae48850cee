"""Baselines wrapped from blackjax: NUTS, HMC, Gaussian VI (mean-field, full-rank), Pathfinder.

Nothing here re-implements an algorithm: each sampler builds blackjax's kernel or
approximation and runs it through :mod:`bayeswb.execution.driver` (MCMC) or a ``lax.scan`` over
optimisation steps (VI), vmapped over independent chains or runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import blackjax
import jax
import jax.numpy as jnp
import optax
from blackjax.vi import fullrank_vi, meanfield_vi

from bayeswb.core.config import (
    SamplerConfig,
    boolean,
    closed_unit_interval,
    option,
    positive,
    positive_int,
    unit_interval,
)
from bayeswb.core.draws import Count, Draws
from bayeswb.core.sampler import ChainKernel
from bayeswb.core.target import Target
from bayeswb.execution.driver import ChainLayout, run_chains, sample_chain
from bayeswb.execution.kernel import run_whole
from bayeswb.samplers import register

Array = jax.Array


# --------------------------------------------------------------------------- HMC family


@dataclasses.dataclass(frozen=True)
class NUTSConfig(SamplerConfig):
    """No-U-Turn sampler with Stan-style window adaptation of step size and mass matrix."""

    step_size: float = option(1.0, positive, "initial step size (fixed if num_warmup=0)")
    target_acceptance_rate: float = option(0.8, unit_interval, "dual-averaging target")
    max_num_doublings: int = option(10, positive_int, "maximum tree depth")
    dense_mass: bool = option(False, boolean, "adapt a dense rather than diagonal mass matrix")


@dataclasses.dataclass(frozen=True)
class HMCConfig(SamplerConfig):
    """Static-length HMC with Stan-style window adaptation of step size and mass matrix."""

    step_size: float = option(
        1.0, positive, "initial step size (kept if num_warmup=0, times the jitter)"
    )
    num_integration_steps: int = option(16, positive_int, "leapfrog steps per transition")
    target_acceptance_rate: float = option(0.8, unit_interval, "dual-averaging target")
    dense_mass: bool = option(False, boolean, "adapt a dense rather than diagonal mass matrix")
    step_size_jitter: float = option(
        0.2, closed_unit_interval, "each transition's step is the adapted one times U(1 -/+ this)"
    )


def _hmc_trace(step_size: Array) -> Callable[[Any, Any], tuple[Array, dict[str, Array]]]:
    def trace(state: Any, info: Any) -> tuple[Array, dict[str, Array]]:
        stats = {
            "lp": state.logdensity,
            "acceptance_rate": info.acceptance_rate,
            "diverging": info.is_divergent,
            "energy": info.energy,
            "n_steps": info.num_integration_steps,
            "step_size": step_size,
        }
        if hasattr(info, "num_trajectory_expansions"):
            stats["tree_depth"] = info.num_trajectory_expansions
        return state.position, stats

    return trace


def _hmc_family_kernel(algorithm: Any, extra: Callable[[Any], dict[str, Any]]) -> ChainKernel:
    """blackjax's ``algorithm`` (hmc or nuts) after its ``window_adaptation``, in pieces:
    the carry is the kernel state with the adapted step size and inverse mass matrix.
    ``extra(config)`` gives the algorithm's own keyword arguments."""

    def start(key: Array, target: Target, config: Any) -> tuple[Any, Any, Array]:
        init_key, warmup_key = jax.random.split(key)
        position = target.init(init_key)
        if config.num_warmup > 0:
            adaptation = blackjax.window_adaptation(
                algorithm,
                target.log_density,
                is_mass_matrix_diagonal=not config.dense_mass,
                initial_step_size=config.step_size,
                target_acceptance_rate=config.target_acceptance_rate,
                **extra(config),
            )
            (state, parameters), warm = adaptation.run(
                warmup_key, position, num_steps=config.num_warmup
            )
            step_size = parameters["step_size"]
            inverse_mass_matrix = parameters["inverse_mass_matrix"]
            _, warmup_stats = _hmc_trace(warm.adaptation_state.step_size)(warm.state, warm.info)
            warmup_trace = (warm.state.position, warmup_stats)
            # one gradient at initialisation, then one per leapfrog step: per warmup step
            # (each below 2**max_num_doublings), summed on the host
            start_grads = jnp.append(1, warmup_stats["n_steps"])
        else:
            step_size = jnp.asarray(config.step_size)
            inverse_mass_matrix = (
                jnp.eye(target.dim) if config.dense_mass else jnp.ones(target.dim)
            )
            state = algorithm.init(position, target.log_density)
            warmup_trace, start_grads = None, jnp.asarray(1)
        return (state, step_size, inverse_mass_matrix), warmup_trace, start_grads

    def step(key: Array, carry: Any, target: Target, config: Any) -> tuple[Any, Any]:
        state, step_size, inverse_mass_matrix = carry
        jitter = getattr(config, "step_size_jitter", 0.0)
        this_step = step_size
        if jitter > 0.0:
            # drawn independently of the state, so each transition stays reversible
            key, jitter_key = jax.random.split(key)
            this_step = step_size * jax.random.uniform(
                jitter_key, minval=1.0 - jitter, maxval=1.0 + jitter
            )
        kernel = algorithm(
            target.log_density,
            step_size=this_step,
            inverse_mass_matrix=inverse_mass_matrix,
            **extra(config),
        )
        state, info = kernel.step(key, state)
        return (state, step_size, inverse_mass_matrix), _hmc_trace(this_step)(state, info)

    return ChainKernel(start, step, grads=lambda stats: stats["n_steps"])


NUTS_KERNEL = _hmc_family_kernel(
    blackjax.nuts, lambda config: {"max_num_doublings": config.max_num_doublings}
)
HMC_KERNEL = _hmc_family_kernel(
    blackjax.hmc, lambda config: {"num_integration_steps": config.num_integration_steps}
)


@register("nuts", NUTSConfig, family="baseline", kernel=NUTS_KERNEL)
def run_nuts(
    key: Array, target: Target, config: NUTSConfig, layout: ChainLayout | None = None
) -> Draws:
    """No-U-Turn Sampler (Hoffman and Gelman 2014, Algorithm 6; multinomial variant of
    Betancourt 2017), blackjax's ``nuts`` kernel after blackjax's Stan-style
    ``window_adaptation`` (dual averaging, Hoffman and Gelman 2014 eq. 6; windowed mass
    matrix estimation). Each chain adapts on its own.

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample("gaussian", "nuts", num_chains=4, num_samples=500, num_warmup=500)
        >>> r.idata.posterior["x"].shape[:2]
        (4, 500)
    """
    return run_whole(key, target, config, NUTS_KERNEL, layout)


@register("hmc", HMCConfig, family="baseline", kernel=HMC_KERNEL)
def run_hmc(
    key: Array, target: Target, config: HMCConfig, layout: ChainLayout | None = None
) -> Draws:
    """Hamiltonian Monte Carlo with a fixed number of leapfrog steps (Duane et al. 1987;
    Neal 2011, eq. 5.18-5.20), blackjax's ``hmc`` kernel after ``window_adaptation``.

    Each sampling transition multiplies the adapted step by ``U(1 - j, 1 + j)``
    (``step_size_jitter`` j, default 0.2; Neal 2011, section 5.4.2.2), drawn independently
    of the state: a fixed trajectory length near a period of the dynamics in some
    direction leaves the chain nearly where it was. On the 10-d ``gaussian`` with
    defaults, the least-mixed coordinate's bulk ESS went from 192 to 7418 (4 x 2624
    draws). ``sample_stats["step_size"]`` records each transition's step.

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample("gaussian", "hmc", num_chains=2, num_samples=200, num_warmup=200)
        >>> int(r.cost["n_grad_evals"]) > 0
        True
    """
    return run_whole(key, target, config, HMC_KERNEL, layout)


# --------------------------------------------------------------------------- Gaussian VI


@dataclasses.dataclass(frozen=True)
class GaussianVIConfig(SamplerConfig):
    """Gaussian variational inference by stochastic ELBO ascent (num_warmup = optimiser steps).

    Draws are independent samples of the fitted approximation, one fit per chain.
    """

    num_warmup: int = option(2000, positive_int, "optimisation steps")
    learning_rate: float = option(0.01, positive, "Adam learning rate")
    num_mc_samples: int = option(8, positive_int, "Monte Carlo samples per ELBO gradient")
    stl_estimator: bool = option(True, boolean, "sticking-the-landing gradient estimator")


def _run_gaussian_vi(
    key: Array,
    target: Target,
    config: GaussianVIConfig,
    family: Any,
    log_q_fn: Callable[[Any], Callable[[Array], Array]],
    layout: ChainLayout | None = None,
) -> Draws:
    # a step whose ELBO gradient is not finite (a draw where the density overflows) is
    # skipped rather than written into the fit: one such draw used to turn the whole fit
    # to NaN (fullrank_vi on stochastic_volatility); the skipped steps' ELBO stays NaN in
    # the trace
    optimizer = optax.apply_if_finite(optax.adam(config.learning_rate), config.num_warmup)
    algorithm = family(
        target.log_density,
        optimizer,
        num_samples=config.num_mc_samples,
        stl_estimator=config.stl_estimator,
    )

    def one_run(run_key: Array) -> tuple[Array, Array, Array, Array]:
        init_key, fit_key, draw_key = jax.random.split(run_key, 3)
        state = algorithm.init(target.init(init_key))
        state, elbo = sample_chain(
            # blackjax's info.elbo is the loss mean(log q - log p), i.e. minus the ELBO
            fit_key,
            algorithm.step,
            state,
            config.num_warmup,
            lambda s, info: -info.elbo,
        )
        positions = algorithm.sample(draw_key, state, config.num_samples)
        log_q = jax.vmap(log_q_fn(state))(positions)
        return positions, jax.vmap(target.log_density)(positions), log_q, elbo

    positions, lp, log_q, elbo = run_chains(key, config.num_chains, one_run, layout)
    n_grad = Count.of(config.num_chains * config.num_warmup * config.num_mc_samples)
    return Draws(
        positions=positions,
        # log_q beside lp: the verdict's k-hat of log p - log q (Yao et al. 2018)
        stats={"lp": lp, "log_q": log_q},
        warmup_stats={"elbo": elbo},
        n_grad_evals=n_grad,
        n_logdensity_evals=n_grad + config.num_chains * config.num_samples,
    )


@register("meanfield_vi", GaussianVIConfig, family="baseline")
def run_meanfield_vi(
    key: Array, target: Target, config: GaussianVIConfig, layout: ChainLayout | None = None
) -> Draws:
    """Mean-field Gaussian VI (ADVI, Kucukelbir et al. 2017, eq. 7-10) with blackjax's
    ``meanfield_vi`` and Adam; the ELBO trace lands in ``warmup_sample_stats.elbo``.

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample("gaussian", "meanfield_vi", num_chains=1, num_warmup=100)
        >>> "elbo" in r.idata.warmup_sample_stats
        True
    """

    def log_q(state: Any) -> Callable[[Array], Array]:
        return meanfield_vi.generate_meanfield_logdensity(state.mu, state.rho)

    return _run_gaussian_vi(key, target, config, blackjax.meanfield_vi, log_q, layout)


@register("fullrank_vi", GaussianVIConfig, family="baseline")
def run_fullrank_vi(
    key: Array, target: Target, config: GaussianVIConfig, layout: ChainLayout | None = None
) -> Draws:
    """Full-rank Gaussian VI (Kucukelbir et al. 2017, section 2.5) with blackjax's
    ``fullrank_vi`` (Cholesky-parametrised covariance) and Adam.

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample("gaussian", "fullrank_vi", num_chains=1, num_warmup=100)
        >>> r.idata.posterior["x"].shape[0]
        1
    """

    def log_q(state: Any) -> Callable[[Array], Array]:
        return fullrank_vi.generate_fullrank_logdensity(state.mu, state.chol_params)

    return _run_gaussian_vi(key, target, config, blackjax.fullrank_vi, log_q, layout)


# --------------------------------------------------------------------------- Pathfinder


@dataclasses.dataclass(frozen=True)
class PathfinderConfig(SamplerConfig):
    """Single-path Pathfinder; ``num_warmup`` is the L-BFGS iteration limit."""

    num_warmup: int = option(30, positive_int, "maximum L-BFGS iterations")
    num_elbo_samples: int = option(64, positive_int, "draws per path point to estimate ELBO")
    history_size: int = option(10, positive_int, "L-BFGS history (maxcor)")


def pathfinder_path(
    key: Array, target: Target, config: PathfinderConfig
) -> tuple[Array, Array, Array, Array]:
    """One Pathfinder path (blackjax's ``vi.pathfinder``): ``config.num_samples`` draws of
    its best Gaussian, their ``lp`` and ``log_q``, and the number of L-BFGS iterations."""
    init_key, fit_key, draw_key = jax.random.split(key, 3)
    state, info = blackjax.vi.pathfinder.approximate(
        fit_key,
        target.log_density,
        target.init(init_key),
        num_samples=config.num_elbo_samples,
        maxiter=config.num_warmup,
        maxcor=config.history_size,
    )
    positions, log_q = blackjax.vi.pathfinder.sample(draw_key, state, config.num_samples)
    num_iterations = jnp.sum(jnp.isfinite(info.path.elbo))
    return positions, jax.vmap(target.log_density)(positions), log_q, num_iterations


def path_grad_evals(num_iterations: Array) -> Count:
    """Gradients of Pathfinder paths of ``num_iterations`` L-BFGS iterations each (one
    entry per path; see :func:`run_pathfinder`'s cost): one at the start, one more at the
    first iteration, two per iteration.

    Example:
        >>> int(path_grad_evals(jnp.array([0, 5])))  # 1, and 1 + 1 + 2 * 5
        13
    """
    num_paths = int(jnp.size(num_iterations))
    return Count.of(num_iterations, each=2) + Count.of(num_iterations > 0) + num_paths


@register("pathfinder", PathfinderConfig, family="baseline")
def run_pathfinder(
    key: Array, target: Target, config: PathfinderConfig, layout: ChainLayout | None = None
) -> Draws:
    """Pathfinder (Zhang, Carpenter, Gelman and Vehtari 2022, Algorithm 1): Gaussian
    approximations along the L-BFGS path, keeping the one of highest ELBO; blackjax's
    ``vi.pathfinder``. One independent path per chain.

    Cost: ``n_logdensity_evals`` is exact (ELBO draws at every path point plus the final
    draws); ``n_grad_evals`` counts one gradient at the start, one more at the first
    iteration (optax's line search state holds no value yet, so
    ``value_and_grad_from_state`` evaluates the start again) and two per L-BFGS
    iteration (the line search's first trial and blackjax's evaluation at the accepted
    point). blackjax does not expose further line-search trials inside optax's L-BFGS, so
    for Pathfinder alone it is a lower bound: exact when every first trial is accepted
    (host-counted: tests/samplers/test_baselines.py), one short in 49 on a 31-d Gaussian
    of condition 31 where one trial was not. Under ``vmap`` (several paths) L-BFGS's
    ``lax.cond`` runs both branches, so a batch of paths computes ``maxiter`` iterations
    each whatever it reports; the count is the paths' own.

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample("gaussian", "pathfinder", num_chains=2, num_samples=100)
        >>> r.idata.posterior["x"].shape[:2]
        (2, 100)
    """

    def one_run(run_key: Array) -> tuple[Array, Array, Array, Array]:
        return pathfinder_path(run_key, target, config)

    positions, lp, log_q, num_iterations = run_chains(key, config.num_chains, one_run, layout)
    n_grad = path_grad_evals(num_iterations)
    elbo_evals = config.num_chains * (config.num_warmup + 1) * config.num_elbo_samples
    return Draws(
        positions=positions,
        stats={"lp": lp, "log_q": log_q},
        n_grad_evals=n_grad,
        n_logdensity_evals=n_grad + elbo_evals + config.num_chains * config.num_samples,
    )
