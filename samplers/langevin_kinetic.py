"""Kinetic (underdamped) Langevin samplers: ``kinetic_langevin`` and ``randomized_midpoint``.

Both discretise the kinetic Langevin diffusion with unit mass and friction ``gamma``

    dX = V dt,    dV = grad log p(X) dt - gamma V dt + sqrt(2 gamma) dW,

whose stationary law is ``p(x) N(v; 0, I)``. A diagonal mass matrix ``M = diag(1/m)``
(option ``inverse_mass_matrix=m``) is the same dynamics with unit mass on the whitened
density ``y -> log p(sqrt(m) * y)``, ``x = sqrt(m) * y`` (see
:mod:`bayeswb.samplers.langevin`), which is how it is run.

blackjax has no integrator for kinetic Langevin, so the splittings (Euler, BAOAB, OBABO)
and the randomized midpoint step are written here; the OBABO core (B A B) is blackjax's
``velocity_verlet`` and its Metropolis correction uses blackjax's ``safe_energy_diff`` and
``static_binomial_sampling``.

Non-finite steps of the unadjusted kernels are rejected (state kept) and flagged
``diverging``; the adjusted kernel rejects them through its acceptance test.

``sample_stats.energy`` is the Hamiltonian ``H = -log p(x) + |v|^2 / 2`` of each draw
(unit-mass, whitened velocity), so ``arviz.bfmi`` applies. Read it with care: the velocity
is only partly refreshed per step (kept with weight ``exp(-gamma h)``), so consecutive
energies are correlated by design and the BFMI is small when ``gamma h`` is small (it is 2
for independent energies); HMC's warning threshold 0.3 does not carry over. It compares
runs of one sampler at one setting; and ``energy + lp`` has mean exactly ``dim / 2`` when
the velocities are at equilibrium (as for the Metropolized kernel).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from blackjax.mcmc.integrators import IntegratorState, velocity_verlet
from blackjax.mcmc.proposal import safe_energy_diff, static_binomial_sampling

from bayeswb.core.config import (
    SamplerConfig,
    boolean,
    one_of,
    option,
    positive,
    unit_interval,
)
from bayeswb.core.draws import Draws
from bayeswb.core.sampler import ChainKernel
from bayeswb.core.target import Target
from bayeswb.execution.driver import ChainLayout, sample_chain
from bayeswb.execution.kernel import run_whole
from bayeswb.samplers import register
from bayeswb.samplers.langevin import (
    all_finite,
    dual_averaging_warmup,
    initial_scale,
    keep_if_finite,
    positive_tuple_or_none,
    to_position,
    to_whitened,
    whitened,
)

Array = jax.Array
LogDensity = Callable[[Array], Array]


class KineticState(NamedTuple):
    """Position x, velocity v, and log p(x) with its gradient (cached between steps)."""

    position: Array
    momentum: Array
    logdensity: Array
    logdensity_grad: Array


class KineticInfo(NamedTuple):
    """acceptance_rate: min(1, exp(-energy error)) (1 for unadjusted steps);
    is_accepted: the proposal was kept; diverging: it was not finite."""

    acceptance_rate: Array
    is_accepted: Array
    diverging: Array


def kinetic_init(key: Array, position: Array, logdensity_fn: LogDensity) -> KineticState:
    """State at ``position`` with velocity drawn from N(0, I) (one gradient evaluation)."""
    logdensity, logdensity_grad = jax.value_and_grad(logdensity_fn)(position)
    momentum = jax.random.normal(key, position.shape, position.dtype)
    return KineticState(position, momentum, logdensity, logdensity_grad)


def _ornstein_uhlenbeck(key: Array, momentum: Array, friction: Array, duration: Array) -> Array:
    """O: the exact velocity flow over ``duration``: v -> e^{-g t} v + sqrt(1-e^{-2 g t}) xi."""
    decay = jnp.exp(-friction * duration)
    noise = jax.random.normal(key, momentum.shape, momentum.dtype)
    return decay * momentum + jnp.sqrt(-jnp.expm1(-2.0 * friction * duration)) * noise


def _unadjusted(state: KineticState, new_state: KineticState) -> tuple[KineticState, KineticInfo]:
    new_state, diverging = keep_if_finite(state, new_state)
    one = jnp.ones((), state.logdensity.dtype)
    return new_state, KineticInfo(one, ~diverging, diverging)


def kinetic_build_kernel(integrator: str, metropolize: bool = False) -> Callable[..., Any]:
    """One step of kinetic Langevin, ``kernel(key, state, logdensity_fn, step_size,
    friction) -> (KineticState, KineticInfo)``; one gradient evaluation per step.

    ``integrator``:

    - ``"euler"``: Euler-Maruyama on the SDE (Kloeden and Platen 1992, section 10.2):
      ``x' = x + h v``, ``v' = v + h (grad log p(x) - gamma v) + sqrt(2 gamma h) xi``.
    - ``"baoab"``: the splitting B(h/2) A(h/2) O(h) A(h/2) B(h/2) of Leimkuhler and
      Matthews (2013, "Rational construction of stochastic numerical methods for
      molecular sampling", section 2.2), with B: ``v += (h/2) grad log p(x)``,
      A: ``x += (h/2) v``, O: the exact Ornstein-Uhlenbeck flow of v for time h.
      Exact position marginal on Gaussian targets.
    - ``"obabo"``: O(h/2) B(h/2) A(h) B(h/2) O(h/2) (Bussi and Parrinello 2007,
      "Accurate sampling using Langevin dynamics"); the B A B core is blackjax's
      velocity Verlet.

    ``metropolize`` (OBABO only): generalised HMC (Horowitz 1991): the B A B proposal is
    accepted with probability ``min(1, exp(H(x, v) - H(x', v')))``,
    ``H = -log p(x) + |v|^2 / 2``, and a rejection negates the velocity; the O half-steps
    preserve ``N(0, I)`` exactly, so the chain is exact for p at any step size.
    """
    if integrator not in ("euler", "baoab", "obabo"):
        raise ValueError(f"integrator must be 'euler', 'baoab' or 'obabo', got {integrator!r}")
    if metropolize and integrator != "obabo":
        raise ValueError(f"metropolize needs integrator 'obabo', got {integrator!r}")

    def euler(key, state, logdensity_fn, step_size, friction):
        x, v, _, grad = state
        noise = jax.random.normal(key, v.shape, v.dtype)
        x = x + step_size * v
        v = v + step_size * (grad - friction * v) + jnp.sqrt(2 * friction * step_size) * noise
        logdensity, grad = jax.value_and_grad(logdensity_fn)(x)
        return _unadjusted(state, KineticState(x, v, logdensity, grad))

    def baoab(key, state, logdensity_fn, step_size, friction):
        x, v, _, grad = state
        v = v + 0.5 * step_size * grad
        x = x + 0.5 * step_size * v
        v = _ornstein_uhlenbeck(key, v, friction, step_size)
        x = x + 0.5 * step_size * v
        logdensity, grad = jax.value_and_grad(logdensity_fn)(x)
        v = v + 0.5 * step_size * grad
        return _unadjusted(state, KineticState(x, v, logdensity, grad))

    def obabo(key, state, logdensity_fn, step_size, friction):
        first_key, accept_key, last_key = jax.random.split(key, 3)
        leapfrog = velocity_verlet(logdensity_fn, lambda p: 0.5 * jnp.sum(p**2))
        v = _ornstein_uhlenbeck(first_key, state.momentum, friction, 0.5 * step_size)
        start = IntegratorState(state.position, v, state.logdensity, state.logdensity_grad)
        end = leapfrog(start, step_size)
        if metropolize:
            energy = lambda s: -s.logdensity + 0.5 * jnp.sum(s.momentum**2)
            log_p_accept = safe_energy_diff(energy(start), energy(end))
            # a finite energy with a non-finite gradient must not be accepted either
            log_p_accept = jnp.where(all_finite(end), log_p_accept, -jnp.inf)
            flipped = start._replace(momentum=-start.momentum)
            end, (is_accepted, acceptance_rate, _) = static_binomial_sampling(
                accept_key, log_p_accept, flipped, end
            )
            info = KineticInfo(acceptance_rate, is_accepted, jnp.isneginf(log_p_accept))
        v = _ornstein_uhlenbeck(last_key, end.momentum, friction, 0.5 * step_size)
        new_state = KineticState(end.position, v, end.logdensity, end.logdensity_grad)
        if metropolize:
            return new_state, info
        return _unadjusted(state, new_state)

    return {"euler": euler, "baoab": baoab, "obabo": obabo}[integrator]


@dataclasses.dataclass(frozen=True)
class KineticLangevinConfig(SamplerConfig):
    """Kinetic Langevin with a fixed step (unadjusted: warmup is burn-in) or, when
    ``metropolize`` (OBABO only), with the step adapted in warmup by dual averaging."""

    step_size: float = option(0.1, positive, "integrator step h (initial if adapted)")
    friction: float = option(2.0, positive, "friction gamma (2 is critical for unit curvature)")
    integrator: str = option("baoab", one_of("euler", "baoab", "obabo"), "splitting scheme")
    metropolize: bool = option(False, boolean, "Metropolis-adjust (OBABO only)")
    target_acceptance_rate: float = option(0.8, unit_interval, "dual-averaging target")
    inverse_mass_matrix: tuple[float, ...] | None = option(
        None, positive_tuple_or_none, "fixed diagonal inverse mass matrix (None: identity)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.metropolize and self.integrator != "obabo":
            raise ValueError(
                f"integrator must be 'obabo' when metropolize is True, got {self.integrator!r}"
            )


def _kinetic_trace(adjusted: bool, scale: Array | None) -> Callable[[Any, Any, Array], Any]:
    def trace(state: KineticState, info: KineticInfo, step_size: Array) -> Any:
        stats = {
            "lp": state.logdensity,
            "energy": -state.logdensity + 0.5 * jnp.sum(state.momentum**2),
            "diverging": info.diverging,
            "step_size": step_size,
        }
        if adjusted:
            stats["acceptance_rate"] = info.acceptance_rate
        return to_position(scale, state.position), stats

    return trace


def _kinetic_chain_kernel(
    build: Callable[[Any], Callable[..., Any]],
    adapt: Callable[[Any], bool],
    grads_per_step: int,
) -> ChainKernel:
    """A kinetic sampler in pieces: ``start`` draws the initial velocity and runs the
    warmup (burn-in at a fixed step, or dual averaging when ``adapt(config)``); the carry
    is the whitened :class:`KineticState` and the step size. ``build(config)`` gives the
    kernel, which spends ``grads_per_step`` gradients per step (one more at the start)."""

    def parts(target: Target, config: Any) -> tuple[Any, Any, Callable[..., Any]]:
        scale = initial_scale(target, config.inverse_mass_matrix)
        logdensity_fn = whitened(target.log_density, scale)
        friction = jnp.asarray(config.friction)
        kernel = build(config)

        def kernel_step(k: Array, s: KineticState, h: Array) -> Any:
            return kernel(k, s, logdensity_fn, h, friction)

        return scale, _kinetic_trace(adapt(config), scale), kernel_step

    def start(key: Array, target: Target, config: Any) -> tuple[Any, Any, Array]:
        scale, trace, kernel_step = parts(target, config)
        init_key, momentum_key, warmup_key = jax.random.split(key, 3)
        position = to_whitened(scale, target.init(init_key))
        state = kinetic_init(momentum_key, position, whitened(target.log_density, scale))
        step_size = jnp.asarray(config.step_size, dtype=position.dtype)
        warmup_trace = None
        if adapt(config) and config.num_warmup > 0:
            state, step_size, warmup_trace = dual_averaging_warmup(
                warmup_key,
                kernel_step,
                state,
                step_size,
                config.num_warmup,
                config.target_acceptance_rate,
                trace,
            )
        elif config.num_warmup > 0:
            fixed = step_size
            state, warmup_trace = sample_chain(
                warmup_key,
                lambda k, s: kernel_step(k, s, fixed),
                state,
                config.num_warmup,
                lambda s, info: trace(s, info, fixed),
            )
        # one gradient at initialisation, then grads_per_step per warmup step
        start_grads = jnp.asarray(1 + grads_per_step * config.num_warmup)
        return (state, step_size), warmup_trace, start_grads

    def step(key: Array, carry: Any, target: Target, config: Any) -> tuple[Any, Any]:
        state, step_size = carry
        _, trace, kernel_step = parts(target, config)
        state, info = kernel_step(key, state, step_size)
        return (state, step_size), trace(state, info, step_size)

    def grads(stats: dict[str, Array]) -> Array:
        return jnp.full_like(stats["lp"], grads_per_step, dtype=jnp.int32)

    return ChainKernel(start, step, grads)


KINETIC_LANGEVIN_KERNEL = _kinetic_chain_kernel(
    lambda config: kinetic_build_kernel(config.integrator, config.metropolize),
    adapt=lambda config: config.metropolize,
    grads_per_step=1,
)


@register(
    "kinetic_langevin", KineticLangevinConfig, family="langevin", kernel=KINETIC_LANGEVIN_KERNEL
)
def run_kinetic_langevin(
    key: Array, target: Target, config: KineticLangevinConfig, layout: ChainLayout | None = None
) -> Draws:
    """Kinetic (underdamped) Langevin with the Euler, BAOAB or OBABO integrator, optionally
    Metropolis-adjusted (OBABO); see :func:`kinetic_build_kernel` for the schemes and
    references. Velocities start from N(0, I); they enter ``sample_stats.energy``
    (see the module docstring). ``inverse_mass_matrix``: a fixed diagonal mass.

    Runs whole or in chunks (:data:`KINETIC_LANGEVIN_KERNEL`, :mod:`bayeswb.execution.kernel`).
    Cost: one gradient per chain at the start and one per step (warmup included).

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample("gaussian", "kinetic_langevin", num_chains=2, num_samples=200,
        ...               num_warmup=100, integrator="obabo", metropolize=True)
        >>> "acceptance_rate" in r.idata.sample_stats
        True
    """
    return run_whole(key, target, config, KINETIC_LANGEVIN_KERNEL, layout)


# --------------------------------------------------------------------------- randomized midpoint


def _series_or_direct(x: Array, direct: Array, series: Array, threshold: float = 0.1) -> Array:
    return jnp.where(x < threshold, series, direct)


def _ou_pair_moments(friction: Array, duration: Array) -> tuple[Array, Array, Array]:
    """Moments of ``A = int_0^t (1 - e^{-g(t-s)})/g dW_s`` and ``C = int_0^t e^{-g(t-s)} dW_s``
    (the noise of the exact position and velocity flow over time t): Var A, Cov(A, C),
    Var C, by Ito's isometry. Var A loses digits to cancellation for small ``g t``, where a
    Taylor series (error below 1e-7 relative for ``g t < 0.1``) replaces it."""
    g, t = friction, duration
    x = g * t
    var_c = -jnp.expm1(-2.0 * x) / (2.0 * g)
    cov_ac = jnp.expm1(-x) ** 2 / (2.0 * g**2)
    safe_x = jnp.maximum(x, 0.1)
    direct = (safe_x + 2.0 * jnp.expm1(-safe_x) - 0.5 * jnp.expm1(-2.0 * safe_x)) / g**3
    series = t**3 * (1 / 3 - x / 4 + 7 * x**2 / 60 - x**3 / 24 + 31 * x**4 / 2520)
    return _series_or_direct(x, direct, series), cov_ac, var_c


def randomized_midpoint_noise_matrix(friction: Array, step_size: Array, tau: Array) -> Array:
    """M (3, 4) with ``(W1, W2, W3) = M @ xi``, ``xi ~ N(0, I_4)``, per coordinate, where

        W1 = int_0^tau (1 - e^{-g(tau-s)})/g dW_s,
        W2 = int_0^h   (1 - e^{-g(h-s)})/g   dW_s,
        W3 = int_0^h   e^{-g(h-s)}           dW_s,

    the three correlated Gaussian integrals of the randomized midpoint step; their exact
    joint covariance is ``M @ M.T`` for any friction g, step h and midpoint tau in [0, h].

    Splitting [0, h] at tau into independent pieces: with (A_t, C_t) the pair of
    :func:`_ou_pair_moments` over [0, tau] and (A', C') over [tau, h], d = h - tau,
    ``W1 = A_t``, ``W2 = A_t + (1 - e^{-g d})/g C_t + A'``, ``W3 = e^{-g d} C_t + C'``.
    """
    delta = step_size - tau

    def cholesky_2x2(duration: Array) -> tuple[Array, Array, Array]:
        var_a, cov_ac, var_c = _ou_pair_moments(friction, duration)
        sd_c = jnp.sqrt(var_c)
        a_on_c = jnp.where(sd_c > 0, cov_ac / jnp.where(sd_c > 0, sd_c, 1.0), 0.0)
        a_rest = jnp.sqrt(jnp.maximum(var_a - a_on_c**2, 0.0))
        return sd_c, a_on_c, a_rest

    c1, a1, a2 = cholesky_2x2(tau)
    c3, b3, b4 = cholesky_2x2(delta)
    decay = jnp.exp(-friction * delta)
    gain = -jnp.expm1(-friction * delta) / friction
    zero = jnp.zeros_like(c1)
    return jnp.stack(
        [
            jnp.stack([a1, a2, zero, zero]),
            jnp.stack([a1 + gain * c1, a2, b3, b4]),
            jnp.stack([decay * c1, zero, c3, zero]),
        ]
    )


def randomized_midpoint_build_kernel() -> Callable[..., Any]:
    """The randomized midpoint method for kinetic Langevin (Shen and Lee 2019, "The
    randomized midpoint method for log-concave sampling", Algorithm 1; analysed for
    general friction by Yu, Karagulyan and Dalalyan 2023, "Langevin Monte Carlo for
    strongly log-concave distributions: randomized midpoint revisited").

    With ``g`` the friction, ``h`` the step, ``E(t) = e^{-g t}``, ``F(t) = (1-E(t))/g``,
    ``u ~ U(0, 1)``, ``tau = u h`` and ``grad = grad log p``, the variation-of-constants
    formula of the SDE, with the force integral estimated at one uniform time tau, gives

        x_mid = x + F(tau) v + (tau - F(tau))/g grad(x) + sqrt(2g) W1
        x'    = x + F(h) v   + h F(h - tau) grad(x_mid)  + sqrt(2g) W2
        v'    = E(h) v       + h E(h - tau) grad(x_mid)  + sqrt(2g) W3

    where (W1, W2, W3) are drawn exactly from their joint Gaussian
    (:func:`randomized_midpoint_noise_matrix`). Two gradient evaluations per step
    (at x_mid and x'); ``grad(x)`` is cached from the previous step.
    """

    def kernel(
        key: Array,
        state: KineticState,
        logdensity_fn: LogDensity,
        step_size: Array,
        friction: Array,
    ) -> tuple[KineticState, KineticInfo]:
        tau_key, noise_key = jax.random.split(key)
        x, v, _, grad = state
        g, h = friction, step_size
        tau = h * jax.random.uniform(tau_key, dtype=x.dtype)
        xi = jax.random.normal(noise_key, (4,) + x.shape, x.dtype)
        w1, w2, w3 = jnp.sqrt(2.0 * g) * jnp.tensordot(
            randomized_midpoint_noise_matrix(g, h, tau), xi, axes=1
        )
        decay = lambda t: jnp.exp(-g * t)
        gain = lambda t: -jnp.expm1(-g * t) / g
        x_mid = x + gain(tau) * v + (tau - gain(tau)) / g * grad + w1
        grad_mid = jax.grad(logdensity_fn)(x_mid)
        new_x = x + gain(h) * v + h * gain(h - tau) * grad_mid + w2
        new_v = decay(h) * v + h * decay(h - tau) * grad_mid + w3
        logdensity, new_grad = jax.value_and_grad(logdensity_fn)(new_x)
        new_state = KineticState(new_x, new_v, logdensity, new_grad)
        new_state, diverging = keep_if_finite(state, new_state)
        # a non-finite midpoint gradient makes new_x non-finite, so it is rejected too
        one = jnp.ones((), x.dtype)
        return new_state, KineticInfo(one, ~diverging, diverging)

    return kernel


@dataclasses.dataclass(frozen=True)
class RandomizedMidpointConfig(SamplerConfig):
    """Randomized midpoint kinetic Langevin at a fixed step (warmup is burn-in)."""

    step_size: float = option(0.1, positive, "step h")
    friction: float = option(2.0, positive, "friction gamma")
    inverse_mass_matrix: tuple[float, ...] | None = option(
        None, positive_tuple_or_none, "fixed diagonal inverse mass matrix (None: identity)"
    )


RANDOMIZED_MIDPOINT_KERNEL = _kinetic_chain_kernel(
    lambda config: randomized_midpoint_build_kernel(),
    adapt=lambda config: False,
    grads_per_step=2,
)


@register(
    "randomized_midpoint",
    RandomizedMidpointConfig,
    family="langevin",
    kernel=RANDOMIZED_MIDPOINT_KERNEL,
)
def run_randomized_midpoint(
    key: Array, target: Target, config: RandomizedMidpointConfig, layout: ChainLayout | None = None
) -> Draws:
    """Kinetic Langevin with the randomized midpoint discretisation (see
    :func:`randomized_midpoint_build_kernel`), unadjusted, optionally with a fixed
    diagonal mass (``inverse_mass_matrix``); reports ``energy`` like ``kinetic_langevin``.

    Runs whole or in chunks (:data:`RANDOMIZED_MIDPOINT_KERNEL`, :mod:`bayeswb.execution.kernel`).
    Cost: one gradient per chain at the start and two per step (warmup included).

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample("gaussian", "randomized_midpoint", num_chains=2, num_samples=100)
        >>> r.cost["n_grad_evals"] == 2 * (1 + 2 * (500 + 100))
        True
    """
    return run_whole(key, target, config, RANDOMIZED_MIDPOINT_KERNEL, layout)
