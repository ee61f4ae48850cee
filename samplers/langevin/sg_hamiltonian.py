"""Stochastic-gradient Hamiltonian Monte Carlo and cyclical SG-MCMC: ``sghmc``, ``csgmcmc``.

Both run on targets with the minibatch interface of
:mod:`~bayeswb.samplers.langevin.stochastic_gradient` (``target.minibatch``: the data,
``log_likelihood_per_datum`` and ``log_prior``); every gradient is blackjax's unbiased
minibatch estimate (``log_prior + N/n sum_batch log_lik``) on ``batch_size`` rows drawn
without replacement, a fresh minibatch for every gradient, independent of the position
and of the injected noise. Like ``sgld``, a state caches its position's minibatch
gradient estimate, and a step whose estimate or position is not finite is rejected (the
chain stays put) and flagged ``diverging``.

Cost: ``n_grad_evals`` counts minibatch gradient estimates (each ``batch_size / N`` of a
full-data gradient): one at the start of a chain, then the ``n_steps`` stat of each warmup
step and draw (one per integration step or inner step); ``n_logdensity_evals`` counts the
full-data log densities of the draws' ``lp`` (one per draw). Both are exact, whole or
chunked.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from blackjax.mcmc.diffusions import DiffusionState
from blackjax.sgmcmc import diffusions
from blackjax.sgmcmc.gradients import logdensity_estimator
from blackjax.util import generate_gaussian_noise

from bayeswb.core.config import option, optional, positive, positive_int
from bayeswb.core.draws import Draws
from bayeswb.core.target import Target
from bayeswb.execution.driver import ChainLayout
from bayeswb.execution.kernel import run_whole
from bayeswb.samplers import register
from bayeswb.samplers.langevin.chain_kernel import LangevinMethod, langevin_chain_kernel
from bayeswb.samplers.langevin.divergence import keep_if_finite
from bayeswb.samplers.langevin.stochastic_gradient import (
    SelfTunedSettings,
    data_interface,
    full_data_lp,
    minibatch,
    self_tuned,
    sgld_draw_step,
    sgld_init,
    stochastic_gradient_method,
)
from bayeswb.samplers.langevin.warmup import WarmupPlan

Array = jax.Array

__all__ = [
    "CyclicalState",
    "csgld_build_kernel",
    "cyclical_step_size",
    "exploration_steps",
    "sghmc_build_kernel",
]


class StepInfo(NamedTuple):
    """diverging: a non-finite step was rejected; step_size: the step of the (last
    sampling) update; n_steps: gradient estimates the transition spent."""

    diverging: Array
    step_size: Array
    n_steps: Array


# --------------------------------------------------------------------------- SGHMC


def sghmc_build_kernel(
    num_data: int, batch_size: int, num_integration_steps: int, friction: float
) -> Callable[..., tuple[DiffusionState, StepInfo]]:
    """Stochastic gradient Hamiltonian Monte Carlo (Chen, Fox and Guestrin 2014, "Stochastic
    Gradient Hamiltonian Monte Carlo", ICML, section 3.2: SGHMC with friction, eq. 15 and
    Algorithm 2, unit mass, noise estimate B-hat = 0):

        x_i = x_{i-1} + h p_{i-1}
        p_i = (1 - C h) p_{i-1} + h g(x_i) + sqrt(2 C h) xi_i,   xi_i ~ N(0, I),

    with ``g`` an unbiased minibatch estimate of grad log p(x | data), ``C`` the friction
    and ``h`` the step. A transition draws a fresh momentum ``p_0 ~ N(0, I)`` and makes
    ``num_integration_steps`` such steps (Chen et al.'s Algorithm 2 resamples the
    momentum now and then; blackjax at every transition).

    The gradient is taken where the position update ends, as in Chen et al.'s Algorithm 2
    (a symplectic Euler step with friction). blackjax's ``diffusions.sghmc`` takes it
    where the step starts (explicit Euler), which is unstable without friction and, on a
    whitened Gaussian at the step the default tunes (h = 0.35, C = 1), inflates the
    stationary variance by 59% where this order inflates it by 4% (from the discrete
    Lyapunov equation of each linear map); so this kernel writes the update itself.

    Unlike blackjax's kernel (one minibatch for all the steps of a transition), each
    gradient is on a fresh minibatch, so the gradient noise of successive steps is
    independent, as in Chen et al.'s analysis. The state caches the gradient estimate at
    its position, so a transition spends exactly ``num_integration_steps`` estimates; it
    is rejected (the chain stays put) and flagged ``diverging`` if its final position,
    log-density and gradient estimate, or final momentum (which carries every gradient
    of the trajectory) are not finite. Works on any position pytree.

    ``kernel(key, state, logdensity_estimator_fn, data, step_size) -> (state, info)``,
    ``logdensity_estimator_fn(position, batch) -> scalar``.
    """

    def kernel(
        key: Array,
        state: DiffusionState,
        logdensity_estimator_fn: Callable,
        data: Any,
        step_size: Array,
    ) -> tuple[DiffusionState, StepInfo]:
        momentum_key, trajectory_key = jax.random.split(key)
        value_and_grad = jax.value_and_grad(logdensity_estimator_fn)
        momentum = generate_gaussian_noise(momentum_key, state.position)

        def integration_step(
            carry: tuple[DiffusionState, Any], step_key: Array
        ) -> tuple[tuple[DiffusionState, Any], None]:
            current, momentum = carry
            noise_key, batch_key = jax.random.split(step_key)
            position = jax.tree.map(lambda x, p: x + step_size * p, current.position, momentum)
            batch = minibatch(batch_key, data, num_data, batch_size)
            value, grad = value_and_grad(position, batch)
            noise = generate_gaussian_noise(noise_key, position)
            scale = jnp.sqrt(2.0 * friction * step_size)
            momentum = jax.tree.map(
                lambda p, g, xi: (1.0 - friction * step_size) * p + step_size * g + scale * xi,
                momentum,
                grad,
                noise,
            )
            return (DiffusionState(position, value, grad), momentum), None

        keys = jax.random.split(trajectory_key, num_integration_steps)
        (new_state, new_momentum), _ = jax.lax.scan(integration_step, (state, momentum), keys)
        (new_state, _), diverging = keep_if_finite((state, momentum), (new_state, new_momentum))
        n_steps = jnp.asarray(num_integration_steps, jnp.int32)
        return new_state, StepInfo(diverging, step_size, n_steps)

    return kernel


@dataclasses.dataclass(frozen=True)
class SGHMCConfig(SelfTunedSettings):
    """SGHMC at a constant step. By default (``step_size=None``) the warmup tunes it with
    a diagonal preconditioner (:func:`sghmc_draw_step`); a given ``step_size`` makes the
    warmup burn-in at that step, without a preconditioner."""

    step_size: float | None = option(
        None,
        optional(positive),
        "step h of each integration step (x' = x + h p); None: tuned in warmup with a "
        "diagonal preconditioner",
    )
    num_integration_steps: int = option(
        10, positive_int, "integration steps (gradient estimates) per transition"
    )
    friction: float = option(
        1.0,
        positive,
        "C, friction per unit time (blackjax's alpha): p' = (1 - C h) p + ... (in the "
        "preconditioned coordinates when step_size is None)",
    )


def sghmc_draw_step(
    tuned_step: Array, gradient_noise: Array, noise_variance_inflation: float, friction: float
) -> Array:
    """SGHMC's step from the SGLD warmup's (``stochastic_gradient.self_tuned``): ULA at
    step ``h_L`` is one leapfrog step of HMC at ``sqrt(2 h_L)`` (Roberts and Tweedie 1996,
    section 1.4), so ``h = sqrt(2 h_L)``; capped so that the gradient noise ``V`` (per
    whitened coordinate) inflates the variance by at most ``noise_variance_inflation``:
    the momentum receives ``2 C h + h^2 V`` of variance per step where the dynamics
    dissipate ``2 C h``, a temperature of ``1 + h V / (2 C)`` (Chen et al. 2014, section
    3.2: the noise is negligible when ``h V`` is small against ``C``).

    Example:
        >>> round(float(sghmc_draw_step(jnp.array(0.02), jnp.array(0.1), 0.03, friction=1.0)), 6)
        0.2
    """
    cap = 2.0 * noise_variance_inflation * friction / gradient_noise
    return jnp.minimum(jnp.sqrt(2.0 * tuned_step), cap)


def _sghmc(target: Target, config: SGHMCConfig) -> LangevinMethod:
    build_kernel = functools.partial(
        sghmc_build_kernel,
        num_integration_steps=config.num_integration_steps,
        friction=config.friction,
    )
    n_steps = {"n_steps": jnp.asarray(config.num_integration_steps, jnp.int32)}
    method = stochastic_gradient_method(
        target, config, logdensity_estimator, lambda x: x, lambda x: (x, n_steps), build_kernel
    )
    if config.step_size is not None:
        return method
    return self_tuned(
        method,
        target,
        config,
        functools.partial(sghmc_draw_step, friction=config.friction),
        {"n_steps": jnp.asarray(2, jnp.int32)},  # the tuning steps' two estimates
    )


# one estimate at the start, then n_steps per step; one full-data lp per draw
SGHMC_KERNEL = langevin_chain_kernel(_sghmc, logdensity_evals_per_step=1, grads_stat="n_steps")


@register("sghmc", SGHMCConfig, family="langevin", kernel=SGHMC_KERNEL, needs_minibatch=True)
def run_sghmc(
    key: Array, target: Target, config: SGHMCConfig, layout: ChainLayout | None = None
) -> Draws:
    """SGHMC (see :func:`sghmc_build_kernel`) on a target with the minibatch interface; a
    draw is the position after one transition of ``num_integration_steps`` steps, ``lp``
    its full-data log density, ``n_steps`` the gradient estimates it spent. Runs whole or
    in chunks (:data:`SGHMC_KERNEL`, :mod:`bayeswb.execution.kernel`).

    Example:
        >>> import jax.numpy as jnp, bayeswb as bw
        >>> y = jnp.linspace(-1.0, 1.0, 50)[:, None]
        >>> prior = lambda x: -0.5 * jnp.sum(x**2)
        >>> lik = lambda x, yi: -0.5 * jnp.sum((yi - x) ** 2)
        >>> t = bw.Target.from_logdensity(
        ...     lambda x: prior(x) + jnp.sum(jax.vmap(lik, (None, 0))(x, y)), dim=1,
        ...     minibatch=bw.MinibatchData(y, lik, prior))
        >>> r = bw.sample(t, "sghmc", num_chains=2, num_samples=100, num_warmup=100,
        ...               batch_size=10, step_size=0.01, num_integration_steps=5)
        >>> r.cost["n_grad_evals"]  # 2 chains x (1 + 5 x (100 + 100))
        2002
        >>> r = bw.sample(t, "sghmc", num_chains=2, num_samples=100, num_warmup=100,
        ...               batch_size=10, num_integration_steps=5)
        >>> r.cost["n_grad_evals"]  # tuned: 2 chains x (1 + 2 x 100 + 5 x 100)
        1402
    """
    return run_whole(key, target, config, SGHMC_KERNEL, layout)


# --------------------------------------------------------------------------- cSG-MCMC


def cyclical_step_size(initial_step_size: Any, cycle_step: Any, cycle_length: int) -> Array:
    """The cosine cyclical step of Zhang et al. (2020, eq. 1),
    ``alpha_k = alpha_0 / 2 [cos(pi mod(k - 1, L) / L) + 1]`` with ``L = ceil(K / M)`` the
    cycle length; ``cycle_step`` is ``mod(k - 1, L)``, counted from 0.

    Example:
        >>> [round(float(cyclical_step_size(1.0, r, 4)), 4) for r in range(4)]
        [1.0, 0.8536, 0.5, 0.1464]
    """
    phase = jnp.pi * jnp.asarray(cycle_step) / cycle_length
    return 0.5 * initial_step_size * (jnp.cos(phase) + 1.0)


def exploration_steps(cycle_length: int, exploration_fraction: float) -> int:
    """How many steps of a cycle explore: those with ``mod(k - 1, L) / L < beta`` (Zhang
    et al. 2020, Algorithm 1), i.e. ``ceil(beta L)``, computed without float round-off.

    Example:
        >>> exploration_steps(10, 0.3), exploration_steps(10, 0.0), exploration_steps(7, 0.5)
        (3, 0, 4)
    """
    count = math.ceil(exploration_fraction * cycle_length)
    while count > 0 and (count - 1) / cycle_length >= exploration_fraction:
        count -= 1
    while count / cycle_length < exploration_fraction:
        count += 1
    return count


class CyclicalState(NamedTuple):
    """The state of cyclical SGLD: the SGLD state (position, minibatch log-density and
    gradient estimates, the fields of blackjax's ``DiffusionState``) and ``cycle_step``,
    ``mod(k - 1, L)`` of the next inner step (int32)."""

    position: Any
    logdensity: Array
    logdensity_grad: Any
    cycle_step: Array

    @property
    def diffusion(self) -> DiffusionState:
        return DiffusionState(self.position, self.logdensity, self.logdensity_grad)

    def with_diffusion(self, diffusion: DiffusionState) -> CyclicalState:
        return self._replace(
            position=diffusion.position,
            logdensity=diffusion.logdensity,
            logdensity_grad=diffusion.logdensity_grad,
        )


def csgld_build_kernel(
    num_data: int, batch_size: int, cycle_length: int, num_exploration_steps: int
) -> Callable[..., tuple[CyclicalState, StepInfo]]:
    """Cyclical SGLD (Zhang, Li, Zhang, Chen and Wilson 2020, "Cyclical Stochastic
    Gradient MCMC for Bayesian Deep Learning", ICLR, Algorithm 1 with SGLD as the
    sampler). Inner step k of the run, at cycle step ``r = mod(k - 1, L)``, is blackjax's
    Euler-Maruyama step (``blackjax.sgmcmc.diffusions.overdamped_langevin``)

        x_k = x_{k-1} + alpha_k g(x_{k-1}) + sqrt(2 T alpha_k) xi_k

    at the cosine step ``alpha_k`` of eq. 1 (:func:`cyclical_step_size`), with ``T = 0``
    (SGD: the exploration stage) for the first ``num_exploration_steps`` steps of a cycle
    (``r / L < beta``) and ``T = 1`` (SGLD: the sampling stage) for the rest. ``g`` is the
    cached minibatch gradient estimate; the new position is evaluated on a fresh
    minibatch, and a non-finite step is rejected (the chain stays put) and flagged.

    One transition ends on one sampling-stage step: at the start of a cycle it first runs
    the whole exploration stage (a ``while_loop``: chains run in step, all at the same
    cycle step, so vectorised chains waste nothing). So every transition's output is a
    sampling-stage iterate, the cycle has ``L - num_exploration_steps`` of them, and a
    transition spends ``num_exploration_steps + 1`` gradient estimates at a cycle's start,
    1 otherwise (``info.n_steps``). ``info.step_size`` is the step of its SGLD update.

    ``kernel(key, state, logdensity_estimator_fn, data, initial_step_size) ->
    (state, info)``, ``logdensity_estimator_fn(position, batch) -> scalar``.
    """
    euler_maruyama = diffusions.overdamped_langevin()

    def kernel(
        key: Array,
        state: CyclicalState,
        logdensity_estimator_fn: Callable,
        data: Any,
        initial_step_size: Array,
    ) -> tuple[CyclicalState, StepInfo]:
        value_and_grad = jax.value_and_grad(logdensity_estimator_fn)
        explore_key, sample_key = jax.random.split(key)

        def inner_step(
            step_key: Array, current: DiffusionState, cycle_step: Array, temperature: float
        ) -> tuple[DiffusionState, Array, Array]:
            noise_key, batch_key = jax.random.split(step_key)
            step_size = cyclical_step_size(initial_step_size, cycle_step, cycle_length)
            step_size = step_size.astype(initial_step_size.dtype)
            position = euler_maruyama(
                noise_key, current.position, current.logdensity_grad, step_size, temperature
            )
            batch = minibatch(batch_key, data, num_data, batch_size)
            moved = DiffusionState(position, *value_and_grad(position, batch))
            new, diverging = keep_if_finite(current, moved)
            return new, diverging, step_size

        def exploring(carry: tuple[DiffusionState, Array, Array]) -> Array:
            return carry[1] < num_exploration_steps

        def explore(carry: tuple[DiffusionState, Array, Array]) -> tuple:
            current, cycle_step, diverging = carry
            step_key = jax.random.fold_in(explore_key, cycle_step)
            current, rejected, _ = inner_step(step_key, current, cycle_step, 0.0)
            return current, cycle_step + 1, diverging | rejected

        start = (state.diffusion, state.cycle_step, jnp.zeros((), bool))
        current, cycle_step, diverging = jax.lax.while_loop(exploring, explore, start)
        current, rejected, step_size = inner_step(sample_key, current, cycle_step, 1.0)
        n_steps = cycle_step - state.cycle_step + 1
        next_step = jnp.where(cycle_step + 1 == cycle_length, 0, cycle_step + 1).astype(jnp.int32)
        info = StepInfo(diverging | rejected, step_size, n_steps.astype(jnp.int32))
        return CyclicalState(
            current.position, current.logdensity, current.logdensity_grad, next_step
        ), info

    return kernel


def _fraction_below_one(value: Any) -> str | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 1
    return None if ok else "must be a number in [0, 1)"


@dataclasses.dataclass(frozen=True)
class CSGMCMCConfig(SelfTunedSettings):
    """Cyclical SGLD. By default (``step_size=None``) the warmup tunes SGLD's step and a
    diagonal preconditioner (:func:`~.stochastic_gradient.self_tuned`) and the cycle's
    alpha_0 is set so that the sampling stage's first (largest) step is that step
    (:func:`csgmcmc_initial_step`); a given ``step_size`` is alpha_0, and the warmup is
    ``num_warmup`` discarded transitions on the same schedule, unpreconditioned."""

    step_size: float | None = option(
        None,
        optional(positive),
        "alpha_0, the step at the start of each cycle; None: from SGLD's step tuned in "
        "warmup with a diagonal preconditioner",
    )
    cycle_length: int = option(50, positive_int, "inner steps per cycle (ceil(K/M))")
    exploration_fraction: float = option(
        0.5, _fraction_below_one, "beta: the fraction of each cycle run as SGD, not kept"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if exploration_steps(self.cycle_length, self.exploration_fraction) >= self.cycle_length:
            raise ValueError(
                "exploration_fraction must leave at least one sampling step in each cycle "
                f"of {self.cycle_length} steps, got {self.exploration_fraction!r}"
            )


def _csgmcmc(target: Target, config: CSGMCMCConfig) -> LangevinMethod:
    data, log_likelihood, log_prior, num_data = data_interface(target, config.batch_size)
    num_exploration = exploration_steps(config.cycle_length, config.exploration_fraction)
    kernel = csgld_build_kernel(num_data, config.batch_size, config.cycle_length, num_exploration)

    def init(key: Array, x: Array, estimator: Callable) -> CyclicalState:
        state = sgld_init(key, x, estimator, data, num_data, config.batch_size)
        return CyclicalState(
            state.position, state.logdensity, state.logdensity_grad, jnp.zeros((), jnp.int32)
        )

    def warmup_trace(state: CyclicalState, info: StepInfo, step_size: Array) -> Any:
        return state.position, {"diverging": info.diverging, "n_steps": info.n_steps}

    def draw_trace(state: CyclicalState, info: StepInfo, step_size: Array) -> Any:
        stats = {"diverging": info.diverging, "step_size": info.step_size, "n_steps": info.n_steps}
        return state.position, stats

    method = LangevinMethod(
        init=init,
        kernel=lambda key, state, estimator, step_size: kernel(
            key, state, estimator, data, step_size
        ),
        trace=warmup_trace,
        # with step_size None, self_tuned below replaces this plan
        warmup=WarmupPlan(config.num_warmup, config.step_size or 0.0),
        logdensity_fn=logdensity_estimator(log_prior, log_likelihood, num_data),
        draw_trace=draw_trace,
        position_stats=full_data_lp(target),
    )
    if config.step_size is not None:
        return method
    draw_step = functools.partial(
        csgmcmc_initial_step, cycle_length=config.cycle_length, num_exploration=num_exploration
    )
    tuned = self_tuned(method, target, config, draw_step, {"n_steps": jnp.asarray(2, jnp.int32)})
    tune = tuned.warmup_kernel
    assert tune is not None

    def warmup_kernel(key: Array, state: CyclicalState, estimator: Callable, step: Array):
        # SGLD's tuning steps move the SGLD part of the state; the cycle waits for the draws
        moved, info = tune(key, state.diffusion, estimator, step)
        return state.with_diffusion(moved), info

    return tuned._replace(warmup_kernel=warmup_kernel)


def csgmcmc_initial_step(
    tuned_step: Array,
    gradient_noise: Array,
    noise_variance_inflation: float,
    cycle_length: int,
    num_exploration: int,
) -> Array:
    """alpha_0 from the SGLD warmup's tuned step: the cycle's first sampling-stage step,
    ``alpha_0 [cos(pi e / L) + 1] / 2`` at cycle step ``e = num_exploration`` (eq. 1 of
    Zhang et al. 2020), equals the step SGLD would draw with
    (:func:`~.stochastic_gradient.sgld_draw_step`: the tuned step capped by the minibatch
    noise), so no draw is made at a larger step than SGLD's; the exploration stage (SGD,
    no draws kept) runs at up to ``2 / [cos(pi e / L) + 1]`` times it (twice for
    ``beta = 1/2``).

    Example:
        >>> step = csgmcmc_initial_step(jnp.array(0.1), jnp.array(0.1), 0.03, 50, 25)
        >>> round(float(step), 6)  # SGLD's 0.1 at cycle step 25 of 50, where cos = 0
        0.2
    """
    draw_step = sgld_draw_step(tuned_step, gradient_noise, noise_variance_inflation)
    return draw_step / cyclical_step_size(1.0, num_exploration, cycle_length)


CSGMCMC_KERNEL = langevin_chain_kernel(_csgmcmc, logdensity_evals_per_step=1, grads_stat="n_steps")


@register("csgmcmc", CSGMCMCConfig, family="langevin", kernel=CSGMCMC_KERNEL, needs_minibatch=True)
def run_csgmcmc(
    key: Array, target: Target, config: CSGMCMCConfig, layout: ChainLayout | None = None
) -> Draws:
    """Cyclical SG-MCMC (Zhang et al. 2020) with SGLD in the sampling stage (cSGLD; see
    :func:`csgld_build_kernel`) on a target with the minibatch interface.

    By default the warmup is sgld's self-tuning (step and diagonal preconditioner from
    minibatch estimates alone, :func:`~.stochastic_gradient.self_tuned`) and alpha_0 is
    set so that each cycle's first sampling step is the step sgld would draw with
    (:func:`csgmcmc_initial_step`); the cycles run in the preconditioned coordinates.
    The cycle length stays an option: a sampling stage much shorter than the chain's
    relaxation time at these steps leaves its draws near the SGD stage's mode (too
    narrow), so give cycles that the ESS says are long enough.

    The draws: every iterate of every sampling stage, and nothing else. A cycle of
    ``cycle_length`` inner steps explores for its first ``ceil(beta * cycle_length)``
    steps (SGD; those iterates are never reported) and then makes one draw per SGLD step,
    so ``num_samples`` draws have static shapes whatever the schedule; the schedule (a
    cycle position carried in the state) runs on through warmup, draws and chunks. Each
    draw's ``step_size`` stat is the step of its SGLD update (large early in a sampling
    stage, near 0 at its end) and ``n_steps`` its gradient estimates (the exploration
    stage is charged to the cycle's first draw). The draws of one sampling stage are
    strongly correlated, and the first ones still carry the law of the exploration stage
    (noise-free SGD contracts towards a mode, its minibatch noise spreads it) until the
    sampling stage has run long enough at its steps to forget it; near a cycle's end the
    steps are too small to move far. Zhang et al. keep a few draws per cycle
    (``bw.sample(..., thin=...)`` thins the draws).

    Example:
        >>> import jax.numpy as jnp, bayeswb as bw
        >>> y = jnp.linspace(-1.0, 1.0, 50)[:, None]
        >>> prior = lambda x: -0.5 * jnp.sum(x**2)
        >>> lik = lambda x, yi: -0.5 * jnp.sum((yi - x) ** 2)
        >>> t = bw.Target.from_logdensity(
        ...     lambda x: prior(x) + jnp.sum(jax.vmap(lik, (None, 0))(x, y)), dim=1,
        ...     minibatch=bw.MinibatchData(y, lik, prior))
        >>> r = bw.sample(t, "csgmcmc", num_chains=2, num_samples=100, num_warmup=0,
        ...               batch_size=10, step_size=0.02, cycle_length=20)
        >>> r.cost["n_grad_evals"]  # 2 x (1 + 100 draws + 10 cycles x 10 SGD steps)
        402
    """
    return run_whole(key, target, config, CSGMCMC_KERNEL, layout)
