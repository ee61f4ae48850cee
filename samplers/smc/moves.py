"""Moves for the SMC family: any MCMC kernel (or unadjusted transport) passed as a function.

A :class:`Move` is what :mod:`bayeswb.samplers.smc` applies to every particle at each
temperature. It follows blackjax's kernel pattern, with the step size as the one tuning
parameter the SMC loop retunes from the particle population:

- ``init(position, logdensity_fn) -> state`` (a state with ``.position`` and
  ``.logdensity``),
- ``step(key, state, logdensity_fn, step_size) -> (state, MoveInfo)``.

``MoveInfo.log_weight_increment`` is zero for a pi-invariant MCMC kernel, and for an
unadjusted transport it is the log of the incremental importance weight the transport
requires (for ULA: the log Metropolis-Hastings ratio it did not apply, see
:func:`ula_transport`). ``MoveInfo.acceptance_rate`` drives the step-size retuning.

The samplers run the move in whitened coordinates ``z = (x - mean) / sd`` of the
weighted particle population, so a move needs no mass matrix: its default step size is
one for a standard normal target in ``dim`` dimensions.

Any blackjax-style kernel whose ``step`` takes ``(key, state, logdensity_fn, step_size)``
and whose info has ``acceptance_rate`` plugs in with :func:`mcmc_move`; the Langevin
kernels of :mod:`bayeswb.samplers.langevin` can be wrapped the same way.

Example:
    >>> import jax, jax.numpy as jnp
    >>> move = mala_move()
    >>> logdensity_fn = lambda x: -0.5 * x @ x
    >>> state = move.init(jnp.zeros(3), logdensity_fn)
    >>> state, info = move.step(jax.random.key(0), state, logdensity_fn, 0.5)
    >>> state.position.shape, float(info.log_weight_increment)
    ((3,), 0.0)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import blackjax
import jax
import jax.numpy as jnp
from blackjax.mcmc import diffusions, integrators, random_walk, trajectory

from bayeswb.core.weights import safe_log_weights
from bayeswb.samplers.langevin import KineticState, kinetic_build_kernel

Array = jax.Array


class MoveInfo(NamedTuple):
    """What one move step reports for one particle.

    acceptance_rate:       Metropolis-Hastings acceptance probability (for an unadjusted
                           transport: the one it would have had), scalar in [0, 1]
    log_weight_increment:  log incremental importance weight of the step (0 for a
                           pi-invariant kernel), scalar
    """

    acceptance_rate: Array
    log_weight_increment: Array


class Move(NamedTuple):
    """An SMC move: a kernel as functions, with its exact cost per step.

    init:                   ``(position, logdensity_fn) -> state``
    step:                   ``(key, state, logdensity_fn, step_size) -> (state, MoveInfo)``
    grads_per_init, grads_per_step:   gradient evaluations of ``logdensity_fn``
    evals_per_init, evals_per_step:   log-density evaluations, those with a gradient included
    default_step_size:      ``dim -> step size`` for a standard normal target
    target_acceptance_rate: acceptance rate the step size is retuned towards
    acceptance_quantile:    retune on this weighted quantile of the particles' acceptance
                            rates (None: on their weighted mean)
    """

    init: Callable[[Array, Callable], Any]
    step: Callable[[Array, Any, Callable, Array], tuple[Any, MoveInfo]]
    grads_per_init: int
    grads_per_step: int
    evals_per_init: int
    evals_per_step: int
    default_step_size: Callable[[int], float]
    target_acceptance_rate: float
    acceptance_quantile: float | None = None


def mcmc_move(
    init: Callable,
    kernel: Callable,
    grads_per_init: int,
    grads_per_step: int,
    default_step_size: Callable[[int], float],
    target_acceptance_rate: float,
    evals_per_init: int | None = None,
    evals_per_step: int | None = None,
) -> Move:
    """Wrap a blackjax-style MCMC kernel ``kernel(key, state, logdensity_fn, step_size)``
    (info with ``acceptance_rate``) as a pi-invariant :class:`Move`.

    Evaluation counts default to the gradient counts (each gradient comes with its value);
    give them for a gradient-free kernel.

    Example:
        >>> move = mcmc_move(blackjax.mcmc.mala.init, blackjax.mcmc.mala.build_kernel(),
        ...                  1, 1, lambda dim: dim ** (-1 / 3), 0.574)
        >>> move.grads_per_step
        1
    """

    def step(key: Array, state: Any, logdensity_fn: Callable, step_size: Array) -> Any:
        new_state, info = kernel(key, state, logdensity_fn, step_size)
        acceptance = jnp.nan_to_num(jnp.asarray(info.acceptance_rate, float), nan=0.0)
        return new_state, MoveInfo(acceptance, jnp.zeros_like(acceptance))

    return Move(
        init=init,
        step=step,
        grads_per_init=grads_per_init,
        grads_per_step=grads_per_step,
        evals_per_init=grads_per_init if evals_per_init is None else evals_per_init,
        evals_per_step=grads_per_step if evals_per_step is None else evals_per_step,
        default_step_size=default_step_size,
        target_acceptance_rate=target_acceptance_rate,
    )


def mala_move() -> Move:
    """blackjax's MALA (Roberts and Tweedie 1996): proposal ``x + h grad + sqrt(2h) xi``.

    Default ``h = 1.36 dim^(-1/3)``: proposal variance ``2h = 1.65^2 dim^(-1/3)``, the
    optimal scaling of Roberts and Rosenthal (1998) for a standard normal; target
    acceptance 0.574.
    """
    return mcmc_move(
        blackjax.mcmc.mala.init,
        blackjax.mcmc.mala.build_kernel(),
        grads_per_init=1,
        grads_per_step=1,
        default_step_size=lambda dim: 1.36 * dim ** (-1.0 / 3.0),
        target_acceptance_rate=0.574,
    )


def hmc_move(num_integration_steps: int) -> Move:
    """blackjax's HMC with ``num_integration_steps`` leapfrog steps, identity mass (the
    particles are whitened) and the step size jittered by U(0.8, 1.2). Default step
    ``dim^(-1/4)`` (Beskos et al. 2013); target acceptance 0.65 (their optimum 0.651)."""
    kernel = blackjax.mcmc.hmc.build_kernel()

    def hmc_kernel(key: Array, state: Any, logdensity_fn: Callable, step_size: Array) -> Any:
        jitter_key, kernel_key = jax.random.split(key)
        # a jittered step size breaks the periodicity of fixed-length trajectories on
        # near-Gaussian (whitened) targets (Neal 2011, section 5.4.2.2)
        step_size = step_size * jax.random.uniform(jitter_key, minval=0.8, maxval=1.2)
        inverse_mass_matrix = jnp.ones_like(state.position)
        return kernel(
            kernel_key,
            state,
            logdensity_fn,
            step_size,
            inverse_mass_matrix,
            num_integration_steps,
        )

    return mcmc_move(
        blackjax.mcmc.hmc.init,
        hmc_kernel,
        grads_per_init=1,
        grads_per_step=num_integration_steps,
        default_step_size=lambda dim: dim ** (-0.25),
        target_acceptance_rate=0.65,
    )


def local_hmc_move(num_integration_steps: int, log_step_sd: float = 0.5) -> Move:
    """HMC whose step size is drawn per transition around a local scale read off the
    gradient: ``log h' ~ N(log h + m(x), log_step_sd^2)`` with
    ``m(x) = -log(1 + |grad log pi(x)|^2 / dim) / 2``. In whitened coordinates a standard
    normal has ``|grad|^2 ~ dim``, so ``h' ~ h / sqrt(2)`` in the bulk; where the density
    is ``r`` times narrower (a funnel's neck) the gradient is ``~r`` times larger and the
    step shrinks with it, where it is flat (the mouth) the step grows to ``h``.

    Exact by the Gibbs self-tuning argument (GIST; Bou-Rabee, Carpenter and Marsden 2024,
    section 2): ``h'`` is an auxiliary variable drawn from ``p(h' | x)``; the leapfrog
    trajectory of ``num_integration_steps`` steps with a momentum flip is an involution
    for fixed ``h'``, so accepting with
    ``min(1, exp(-Delta H) p(h' | x') / p(h' | x))`` leaves pi invariant. The gradient at
    ``x'`` is the trajectory's last one: no extra cost. Identity mass (particles are
    whitened); default step ``dim^(-1/4)``, target acceptance 0.65 as :func:`hmc_move`.
    """
    integrate = trajectory.static_integration
    metric = blackjax.mcmc.metrics.default_metric(jnp.ones(1))

    def log_scale(grad: Array) -> Array:
        return -0.5 * jnp.log1p(jnp.sum(grad**2) / grad.shape[-1])

    def step(key: Array, state: Any, logdensity_fn: Callable, step_size: Array) -> Any:
        momentum_key, step_key, accept_key = jax.random.split(key, 3)
        position = state.position
        momentum = jax.random.normal(momentum_key, position.shape, position.dtype)
        start = integrators.IntegratorState(
            position, momentum, state.logdensity, state.logdensity_grad
        )
        noise = log_step_sd * jax.random.normal(step_key)
        log_h = jnp.log(step_size) + log_scale(state.logdensity_grad) + noise
        integrator = integrators.velocity_verlet(logdensity_fn, metric.kinetic_energy)
        end = integrate(integrator)(start, jnp.exp(log_h), num_integration_steps)
        # log p(h' | x') - log p(h' | x) of the Gaussian on log h'
        back = log_h - jnp.log(step_size) - log_scale(end.logdensity_grad)
        log_ratio = (
            end.logdensity
            - state.logdensity
            - 0.5 * jnp.sum(end.momentum**2)
            + 0.5 * jnp.sum(momentum**2)
            + (noise**2 - back**2) / (2.0 * log_step_sd**2)
        )
        log_ratio = jnp.where(jnp.isnan(log_ratio), -jnp.inf, log_ratio)
        acceptance = jnp.exp(jnp.minimum(log_ratio, 0.0))
        accept = jax.random.uniform(accept_key) < acceptance
        new = blackjax.mcmc.hmc.HMCState(end.position, end.logdensity, end.logdensity_grad)
        new = jax.tree.map(lambda a, b: jnp.where(accept, a, b), new, state)
        return new, MoveInfo(acceptance, jnp.zeros_like(acceptance))

    return Move(
        init=blackjax.mcmc.hmc.init,
        step=step,
        grads_per_init=1,
        grads_per_step=num_integration_steps,
        evals_per_init=1,
        evals_per_step=num_integration_steps,
        default_step_size=lambda dim: dim ** (-0.25),
        target_acceptance_rate=0.65,
    )


def rwm_move() -> Move:
    """blackjax's Gaussian random-walk Metropolis; the step size is the proposal sd.
    Default ``2.38 / sqrt(dim)``, target acceptance 0.234 (Roberts, Gelman and Gilks
    1997). No gradients."""
    kernel = random_walk.build_additive_step()

    def rwm_kernel(key: Array, state: Any, logdensity_fn: Callable, step_size: Array) -> Any:
        sigma = step_size * jnp.ones_like(state.position)
        return kernel(key, state, logdensity_fn, random_walk.normal(sigma))

    return mcmc_move(
        random_walk.init,
        rwm_kernel,
        grads_per_init=0,
        grads_per_step=0,
        evals_per_init=1,
        evals_per_step=1,
        default_step_size=lambda dim: 2.38 / dim**0.5,
        target_acceptance_rate=0.234,
    )


def _ula_log_transition(x: Array, y: Array, grad_x: Array, step_size: Array) -> Array:
    """log K(y | x) of the Euler step ``y = x + h grad(x) + sqrt(2h) xi``, up to a constant
    that cancels between forward and backward kernels."""
    return -jnp.sum((y - x - step_size * grad_x) ** 2) / (4.0 * step_size)


# the unadjusted transport's step is retuned on the particles it moves worst (see
# ula_transport)
ULA_ACCEPTANCE_QUANTILE = 0.01


def ula_transport() -> Move:
    """One unadjusted Langevin (Euler-Maruyama) step with its exact incremental weight.

    The particle moves with blackjax's ``overdamped_langevin`` integrator for the current
    tempered density pi, ``y = x + h grad log pi(x) + sqrt(2h) xi``, and is never
    rejected. Using the same kernel for pi as the backward kernel L in the incremental
    weight of Del Moral, Doucet and Jasra (2006, Section 3: gamma_n(x_n) L(x_{n-1} | x_n)
    / (gamma_{n-1}(x_{n-1}) K(x_n | x_{n-1}))), after the tempering factor, the weight is

        w(x, y) = pi(y) K(x | y) / (pi(x) K(y | x)),

    exactly the Metropolis-Hastings ratio MALA would have used. Its log goes to
    ``log_weight_increment``; ``acceptance_rate`` is ``min(1, w)``. As ``h -> 0`` it tends
    to 1 and the weights reduce to Jarzynski's (1997) work estimator, which the
    continuous-time SMC of Sequential Boltzmann Generators (Tan et al. 2025) uses; keeping
    the discretisation term makes the log Z estimate exact for every ``h``.

    Exact for every ``h``, but not of the same variance: where a step is too large for
    the local curvature, the particle overshoots, its weight ``w`` collapses, and the
    mass it carried is lost to a finite population (the estimate stays unbiased only
    through rare huge weights). So the step is retuned on the weighted 1% quantile of
    the would-be acceptance ``min(1, w)``, not on its mean: at most one particle in 100
    moves with a would-be acceptance below the target 0.9 (the minimum would let a
    single particle's noise set the step). Measured with defaults on ``banana``, whose
    arms are curved most: tuned on the mean (4 x 1000, seeds 0 and 1), the arms'
    particles overshot and the draws' sds were 50% short (means 17 MCSEs off, log Z 5.5
    SEs) with a verdict of "fine". At 16 x 512 (seeds 4-6) the 5% quantile still left
    x_2's variance 12-20% short (|z| up to 5.3), the 1% quantile and the minimum did not
    (|z| at most 1.6 and 2.1). The price is transport: a smaller step moves the
    particles less, which the weights pay for. On ``manywell`` (32-d; defaults, 8 runs,
    seed 0) the step fell from 0.047 to 0.013 and |delta log Z| rose from 0.89 to 4.5
    (0.05 quantile: 3.1), flagged every time (``log_z_spread``, ``runs_agree``): a
    silent bias traded for a flagged error.
    """

    def step(key: Array, state: Any, logdensity_fn: Callable, step_size: Array) -> Any:
        integrator = diffusions.overdamped_langevin(jax.value_and_grad(logdensity_fn))
        new_state = integrator(key, state, step_size)
        forward = _ula_log_transition(
            state.position, new_state.position, state.logdensity_grad, step_size
        )
        backward = _ula_log_transition(
            new_state.position, state.position, new_state.logdensity_grad, step_size
        )
        log_ratio = new_state.logdensity - state.logdensity + backward - forward
        log_ratio = safe_log_weights(log_ratio)
        acceptance = jnp.exp(jnp.minimum(log_ratio, 0.0))
        return blackjax.mcmc.mala.MALAState(*new_state), MoveInfo(acceptance, log_ratio)

    return Move(
        init=blackjax.mcmc.mala.init,
        step=step,
        grads_per_init=1,
        grads_per_step=1,
        evals_per_init=1,
        evals_per_step=1,
        default_step_size=lambda dim: 0.5 * dim ** (-1.0 / 3.0),
        # the weights' variance grows with the would-be rejection rate
        target_acceptance_rate=0.9,
        acceptance_quantile=ULA_ACCEPTANCE_QUANTILE,
    )


def kinetic_langevin_move(num_integration_steps: int, friction: float = 1.0) -> Move:
    """Metropolised kinetic Langevin: ``num_integration_steps`` OBABO steps of
    :func:`~bayeswb.samplers.langevin.kinetic.kinetic_build_kernel` (generalised HMC,
    Horowitz 1991: each B A B proposal accepted with ``min(1, exp(-energy error))``, a
    rejection negates the velocity) from a velocity drawn fresh from N(0, I), which is
    then discarded. Every OBABO step leaves ``pi(x) N(v; 0, I)`` invariant and the fresh
    draw makes the start exact, so the move is pi-invariant for any step size.

    Friction 1 in whitened coordinates (each O half-step keeps ``exp(-h/2)`` of the
    velocity, so consecutive steps move in a persistent direction, as in HMC, without a
    trajectory length to tune). Default step ``dim^(-1/4)`` as for HMC; target
    acceptance 0.75 (one rejection reverses the direction, so it is set above HMC's).
    """
    kernel = kinetic_build_kernel("obabo", metropolize=True)
    damping = jnp.asarray(friction)

    def step(key: Array, state: Any, logdensity_fn: Callable, step_size: Array) -> Any:
        velocity_key, steps_key = jax.random.split(key)
        position = state.position
        velocity = jax.random.normal(velocity_key, position.shape, position.dtype)
        start = KineticState(position, velocity, state.logdensity, state.logdensity_grad)

        def one_step(kinetic: KineticState, step_key: Array) -> tuple[KineticState, Array]:
            kinetic, info = kernel(step_key, kinetic, logdensity_fn, step_size, damping)
            return kinetic, info.acceptance_rate

        end, acceptance = jax.lax.scan(
            one_step, start, jax.random.split(steps_key, num_integration_steps)
        )
        new_state = blackjax.mcmc.mala.MALAState(end.position, end.logdensity, end.logdensity_grad)
        acceptance = jnp.nan_to_num(jnp.mean(acceptance), nan=0.0)
        return new_state, MoveInfo(acceptance, jnp.zeros_like(acceptance))

    return Move(
        init=blackjax.mcmc.mala.init,
        step=step,
        grads_per_init=1,
        grads_per_step=num_integration_steps,
        evals_per_init=1,
        evals_per_step=num_integration_steps,
        default_step_size=lambda dim: dim ** (-0.25),
        target_acceptance_rate=0.75,
    )


MCMC_MOVES = ("mala", "hmc", "local_hmc", "rwm", "kinetic_langevin")
TRANSPORT_MOVES = ("ula",)


def make_move(move: str | Move, num_integration_steps: int = 5) -> Move:
    """A built-in move by name (``mala``, ``hmc``, ``rwm``, ``kinetic_langevin``, ``ula``),
    or ``move`` itself; ``num_integration_steps`` is the number of leapfrog steps of hmc and
    of OBABO steps of kinetic_langevin."""
    if isinstance(move, Move):
        return move
    builders = {
        "mala": mala_move,
        "hmc": lambda: hmc_move(num_integration_steps),
        "local_hmc": lambda: local_hmc_move(num_integration_steps),
        "rwm": rwm_move,
        "ula": ula_transport,
        "kinetic_langevin": lambda: kinetic_langevin_move(num_integration_steps),
    }
    return builders[move]()
