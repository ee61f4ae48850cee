"""Baselines wrapped from blackjax: NUTS, HMC, Gaussian VI (mean-field, full-rank), Pathfinder.

Nothing here re-implements an algorithm: each sampler builds blackjax's kernel or
approximation and runs it through :mod:`bayeswb.execution.driver` (MCMC) or a ``lax.scan`` over
optimisation steps (VI), vmapped over independent chains or runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import blackjax
import jax
import jax.numpy as jnp
import optax
from blackjax.optimizers.lbfgs import lbfgs_inverse_hessian_factors, lbfgs_recover_alpha
from blackjax.vi import fullrank_vi, meanfield_vi

from bayeswb.core.climb import lbfgs_climb
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
from bayeswb.samplers.stan_windows import StanWindows, WindowState

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


class HMCCarry(NamedTuple):
    """What an HMC-family chain carries: blackjax's kernel state, the Stan warmup's
    adaptation (:class:`~bayeswb.samplers.stan_windows.WindowState`) and how many steps
    it has made."""

    state: Any
    adaptation: WindowState
    steps_done: Array


def _stan_windows(config: Any) -> StanWindows:
    return StanWindows(config.num_warmup, config.dense_mass, config.target_acceptance_rate)


def _hmc_family_kernel(algorithm: Any, extra: Callable[[Any], dict[str, Any]]) -> ChainKernel:
    """blackjax's ``algorithm`` (hmc or nuts) with Stan's windowed warmup
    (:mod:`bayeswb.samplers.stan_windows`) in its steps: the first ``num_warmup`` steps
    adapt the step size and inverse mass matrix, the draws use the adapted ones, and
    warmup and draws run the one kernel. ``extra(config)`` gives the algorithm's own
    keyword arguments."""

    def start(key: Array, target: Target, config: Any) -> tuple[HMCCarry, None, Array]:
        position = target.init(key)
        state = algorithm.init(position, target.log_density)
        step_size = jnp.asarray(config.step_size, position.dtype)
        adaptation = _stan_windows(config).init(target.dim, step_size)
        # one gradient at initialisation; the steps count their own
        return HMCCarry(state, adaptation, jnp.asarray(0)), None, jnp.asarray(1)

    def step(key: Array, carry: HMCCarry, target: Target, config: Any) -> tuple[Any, Any]:
        windows = _stan_windows(config)
        warming = carry.steps_done < config.num_warmup
        step_size, inverse_mass_matrix = windows.final(carry.adaptation)
        step_size = jnp.where(warming, carry.adaptation.step_size, step_size)
        inverse_mass_matrix = jnp.where(
            warming, carry.adaptation.inverse_mass_matrix, inverse_mass_matrix
        )
        jitter = getattr(config, "step_size_jitter", 0.0)
        this_step = step_size
        if jitter > 0.0:
            # drawn independently of the state, so each transition stays reversible; the
            # warmup's steps are not jittered
            key, jitter_key = jax.random.split(key)
            factor = jax.random.uniform(
                jitter_key, dtype=step_size.dtype, minval=1.0 - jitter, maxval=1.0 + jitter
            )
            this_step = step_size * jnp.where(warming, 1.0, factor)
        kernel = algorithm(
            target.log_density,
            step_size=this_step,
            inverse_mass_matrix=inverse_mass_matrix,
            **extra(config),
        )
        state, info = kernel.step(key, carry.state)
        # a cond, not a select: in a whole run the step counter is the same for all
        # chains (not batched), so the draws skip the adaptation's arithmetic
        adaptation = jax.lax.cond(
            warming,
            lambda a: windows.update(a, carry.steps_done, state.position, info.acceptance_rate),
            lambda a: a,
            carry.adaptation,
        )
        carry = HMCCarry(state, adaptation, carry.steps_done + 1)
        return carry, _hmc_trace(this_step)(state, info)

    return ChainKernel(
        start,
        step,
        grads=lambda stats: stats["n_steps"],
        warmup_steps=lambda config: config.num_warmup,
    )


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
    Betancourt 2017), blackjax's ``nuts`` kernel with Stan's windowed warmup (dual
    averaging, Hoffman and Gelman 2014 eq. 6; windowed mass matrix estimation;
    :mod:`bayeswb.samplers.stan_windows`, the same adaptation as blackjax's
    ``window_adaptation``, taken one step at a time so that warmup and draws are one loop
    over one compiled kernel). Each chain adapts on its own.

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
    Neal 2011, eq. 5.18-5.20), blackjax's ``hmc`` kernel with Stan's windowed warmup
    (:mod:`bayeswb.samplers.stan_windows`, as for ``nuts``).

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
    """One Pathfinder path (Zhang, Carpenter, Gelman and Vehtari 2022, Algorithms 1 and
    3): ``config.num_samples`` draws of its Gaussian of highest ELBO, their ``lp`` and
    ``log_q``, and the path's gradient evaluations.

    The path is :func:`bayeswb.core.climb.lbfgs_climb`'s (its start and accepted
    iterates): one value-and-gradient evaluation per trial point, each counted, in a
    program that holds one copy of the gradient. At each point the inverse-Hessian
    factors come from the last ``history_size`` steps (blackjax's
    ``lbfgs_recover_alpha`` and ``lbfgs_inverse_hessian_factors``, Algorithm 3), and
    ``num_elbo_samples`` draws of that Gaussian (:func:`factor_gaussian`) estimate
    its ELBO; points past the path's end get ELBO ``-inf``.
    """
    init_key, elbo_key, draw_key = jax.random.split(key, 3)
    climb = lbfgs_climb(
        target.log_density, target.init(init_key), config.num_warmup, record_path=True
    )
    x, loss_grad, length = climb.path_positions, climb.path_gradients, climb.path_length
    assert x is not None and loss_grad is not None and length is not None
    points, history = x.shape[0], config.history_size
    steps, changes = jnp.diff(x, axis=0), jnp.diff(loss_grad, axis=0)
    taken = jnp.arange(1, points) < length  # the step into point i + 1 was made

    def next_alpha(alpha: Array, step: tuple) -> tuple[Array, tuple[Array, Array]]:
        s_l, z_l, made = step
        new_alpha, used = lbfgs_recover_alpha(alpha, s_l, z_l)
        used = used & made
        alpha = jnp.where(used, new_alpha, alpha)
        return alpha, (alpha, used)

    _, (alphas, used) = jax.lax.scan(next_alpha, jnp.ones_like(x[0]), (steps, changes, taken))
    alphas = jnp.concatenate([jnp.ones_like(x[:1]), alphas])
    padding = ((history, 0), (0, 0))
    steps = jnp.pad(jnp.where(used, steps, 0.0), padding)
    changes = jnp.pad(jnp.where(used, changes, 0.0), padding)

    def gaussian_at(i: Array, noise: Array) -> tuple[Array, FactorGaussian]:
        """Point i's ELBO and its Gaussian (from the history_size steps up to it)."""
        window = i + jnp.arange(history)
        beta, gamma = lbfgs_inverse_hessian_factors(steps[window].T, changes[window].T, alphas[i])
        gaussian = factor_gaussian(x[i], -loss_grad[i], alphas[i], beta, gamma)
        draws, log_q = gaussian.draw(noise)
        return jnp.mean(jax.vmap(target.log_density)(draws) - log_q), gaussian

    indices = jnp.arange(points)
    # every point's noise in one draw: one random-number call site, not one per point
    noise = jax.random.normal(elbo_key, (points, config.num_elbo_samples, x.shape[1]), x.dtype)
    elbo, gaussians = jax.vmap(gaussian_at)(indices, noise)
    elbo = jnp.where((indices < length) & jnp.isfinite(elbo), elbo, -jnp.inf)
    # the best point's Gaussian as computed for its ELBO: no second factorisation
    best = jax.tree.map(lambda leaf: leaf[jnp.argmax(elbo)], gaussians)
    noise = jax.random.normal(draw_key, (config.num_samples, x.shape[1]), x.dtype)
    positions, log_q = best.draw(noise)
    return positions, jax.vmap(target.log_density)(positions), log_q, climb.evaluations


class FactorGaussian(NamedTuple):
    """Pathfinder's Gaussian at a point of its path, ready to draw from:
    ``x = mean + root_alpha * (u + Q (L - I) Q^T u)`` for standard normal ``u``
    (:func:`factor_gaussian`), with ``lower_minus_eye`` ``L - I``."""

    mean: Array
    root_alpha: Array
    q: Array
    lower_minus_eye: Array
    log_det: Array

    def draw(self, noise: Array) -> tuple[Array, Array]:
        """Draws from standard normal ``noise`` (n, d), and their log densities."""
        q = self.q
        draws = self.mean + self.root_alpha * (
            noise + ((noise @ q) @ self.lower_minus_eye.T) @ q.T
        )
        dim = self.mean.shape[0]
        log_q = -0.5 * (self.log_det + jnp.sum(noise**2, axis=-1) + dim * jnp.log(2.0 * jnp.pi))
        return draws, log_q


def factor_gaussian(
    position: Array, gradient: Array, alpha: Array, beta: Array, gamma: Array
) -> FactorGaussian:
    """Pathfinder's Gaussian at a point of its path (Zhang et al. 2022, Algorithm 4,
    BFGS-Sample). Its covariance is the L-BFGS inverse Hessian ``Sigma = diag(alpha) +
    beta gamma beta^T``, its mean the quasi-Newton step from ``position`` along the log
    density's ``gradient``, ``mu = position + Sigma gradient``. With ``Q R =
    diag(alpha)^(-1/2) beta`` (thin QR) and ``L L^T = I + R gamma R^T``, ``C =
    diag(alpha)^(1/2) (I + Q (L - I) Q^T)`` has ``C C^T = Sigma``: draws are ``mu + C u``.

    (blackjax's ``bfgs_sample`` takes the mean along the gradient of the negative log
    density that its L-BFGS minimised: a step away from the mode wherever the gradient is
    not zero.)

    Example:
        >>> gaussian = factor_gaussian(jnp.zeros(2), jnp.array([3.0, 3.0]), jnp.ones(2),
        ...                            jnp.zeros((2, 2)), jnp.zeros((2, 2)))
        >>> gaussian.draw(jnp.zeros((1, 2)))[0].tolist()  # N(0, I)'s step to a peak at 3
        [[3.0, 3.0]]
    """
    root_alpha = jnp.sqrt(alpha)
    q, r = jnp.linalg.qr(beta / root_alpha[:, None])
    eye = jnp.eye(r.shape[0], dtype=r.dtype)
    lower = jnp.linalg.cholesky(eye + r @ gamma @ r.T)
    log_det = jnp.sum(jnp.log(alpha)) + 2.0 * jnp.sum(jnp.log(jnp.diag(lower)))
    mean = position + alpha * gradient + beta @ (gamma @ (beta.T @ gradient))
    return FactorGaussian(mean, root_alpha, q, lower - eye, log_det)


@register("pathfinder", PathfinderConfig, family="baseline")
def run_pathfinder(
    key: Array, target: Target, config: PathfinderConfig, layout: ChainLayout | None = None
) -> Draws:
    """Pathfinder (Zhang, Carpenter, Gelman and Vehtari 2022, Algorithm 1): Gaussian
    approximations along the L-BFGS path, keeping the one of highest ELBO
    (:func:`pathfinder_path`: bayeswb's L-BFGS climb, blackjax's inverse-Hessian
    factors). One independent path per chain.

    Cost: exact. ``n_grad_evals`` is the L-BFGS path's value-and-gradient evaluations
    (one per trial point of its line searches); ``n_logdensity_evals`` adds the ELBO
    draws at every point of a path of ``num_warmup`` steps (all of them computed, past
    the path's end too) and the final draws.

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample("gaussian", "pathfinder", num_chains=2, num_samples=100)
        >>> r.idata.posterior["x"].shape[:2]
        (2, 100)
    """

    def one_run(run_key: Array) -> tuple[Array, Array, Array, Array]:
        return pathfinder_path(run_key, target, config)

    positions, lp, log_q, evaluations = run_chains(key, config.num_chains, one_run, layout)
    n_grad = Count.of(evaluations)
    elbo_evals = config.num_chains * (config.num_warmup + 1) * config.num_elbo_samples
    return Draws(
        positions=positions,
        stats={"lp": lp, "log_q": log_q},
        n_grad_evals=n_grad,
        n_logdensity_evals=n_grad + elbo_evals + config.num_chains * config.num_samples,
    )
