"""Kinetic (underdamped) Langevin: ``kinetic_langevin``, and the state and trace that
``randomized_midpoint`` (:mod:`bayeswb.samplers.langevin.randomized_midpoint`) shares.

Both discretise the kinetic Langevin diffusion with unit mass and friction ``gamma``

    dX = V dt,    dV = grad log p(X) dt - gamma V dt + sqrt(2 gamma) dW,

whose stationary law is ``p(x) N(v; 0, I)``. A diagonal mass matrix ``M = diag(1/m)``
(option ``inverse_mass_matrix=m``) is the same dynamics with unit mass on the whitened
density ``y -> log p(sqrt(m) * y)``, ``x = sqrt(m) * y`` (see
:mod:`bayeswb.samplers.langevin.preconditioning`), which is how it is run.

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
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from blackjax.mcmc.integrators import IntegratorState, velocity_verlet
from blackjax.mcmc.proposal import safe_energy_diff, static_binomial_sampling

from bayeswb.core.config import (
    boolean,
    one_of,
    option,
    positive,
    unit_interval,
)
from bayeswb.core.draws import Draws
from bayeswb.core.target import Target
from bayeswb.execution.driver import ChainLayout
from bayeswb.execution.kernel import run_whole
from bayeswb.samplers import register
from bayeswb.samplers.langevin.chain_kernel import LangevinMethod, langevin_chain_kernel
from bayeswb.samplers.langevin.divergence import all_finite, keep_if_finite
from bayeswb.samplers.langevin.warmup import (
    ENERGY_VARIANCE_TARGET,
    MassMatrixSettings,
    TraceFn,
    WarmupPlan,
    adapts_mass_matrix,
    energy_variance_statistic,
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
    """acceptance_rate: ``min(1, exp(-energy_error))``, the probability of the Metropolis
    test (for unadjusted steps: the one the step would have had); is_accepted: the
    proposal was kept; diverging: it was not finite; energy_error: the shadow work of the
    step (:func:`kinetic_build_kernel`)."""

    acceptance_rate: Array
    is_accepted: Array
    diverging: Array
    energy_error: Array


def _kinetic_energy(momentum: Array) -> Array:
    return 0.5 * jnp.sum(momentum**2)


def kinetic_init(key: Array, position: Array, logdensity_fn: LogDensity) -> KineticState:
    """State at ``position`` with velocity drawn from N(0, I) (one gradient evaluation)."""
    logdensity, logdensity_grad = jax.value_and_grad(logdensity_fn)(position)
    momentum = jax.random.normal(key, position.shape, position.dtype)
    return KineticState(position, momentum, logdensity, logdensity_grad)


def flip_momentum(state: KineticState) -> KineticState:
    """The state with its velocity negated (what a rejection does in generalised HMC)."""
    return state._replace(momentum=-state.momentum)


def _ornstein_uhlenbeck(key: Array, momentum: Array, friction: Array, duration: Array) -> Array:
    """O: the exact velocity flow over ``duration``: v -> e^{-g t} v + sqrt(1-e^{-2 g t}) xi."""
    decay = jnp.exp(-friction * duration)
    noise = jax.random.normal(key, momentum.shape, momentum.dtype)
    return decay * momentum + jnp.sqrt(-jnp.expm1(-2.0 * friction * duration)) * noise


def accept_if_finite(
    state: KineticState, new_state: KineticState, energy_error: Array
) -> tuple[KineticState, KineticInfo]:
    """An unadjusted step to ``new_state`` of shadow work ``energy_error``: taken if
    finite, else rejected and flagged (its energy error then +inf)."""
    new_state, diverging = keep_if_finite(state, new_state)
    energy_error = jnp.where(diverging | jnp.isnan(energy_error), jnp.inf, energy_error)
    acceptance_rate = jnp.minimum(1.0, jnp.exp(-energy_error))
    return new_state, KineticInfo(acceptance_rate, ~diverging, diverging, energy_error)


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

    Every step reports its energy error, the shadow work ``W`` (Sivak, Chodera and Crooks
    2013, "Using nonequilibrium fluctuation theorems to understand and correct errors in
    equilibrium and nonequilibrium simulations of complex systems", Phys. Rev. X 3,
    011007, section II): the change of ``H`` over the step minus the heat, the change of
    the kinetic energy in its friction-and-noise parts (the O steps; for Euler, the
    move from ``v + h grad`` to ``v'``). It is zero for exact Hamiltonian parts, and its
    statistics measure the configurational error of the integrator (Fass et al. 2018,
    "Quantifying configuration-sampling error in Langevin simulations of complex
    molecular systems", Entropy 20, 318); for OBABO ``exp(-W)`` is the acceptance
    ratio above. No extra gradient evaluations (BAOAB's midpoint energy cancels).
    """
    if integrator not in ("euler", "baoab", "obabo"):
        raise ValueError(f"integrator must be 'euler', 'baoab' or 'obabo', got {integrator!r}")
    if metropolize and integrator != "obabo":
        raise ValueError(f"metropolize needs integrator 'obabo', got {integrator!r}")

    def euler(key, state, logdensity_fn, step_size, friction):
        x, v, _, grad = state
        noise = jax.random.normal(key, v.shape, v.dtype)
        kicked = v + step_size * grad  # the Hamiltonian part; friction and noise are heat
        x = x + step_size * v
        v = kicked - step_size * friction * v + jnp.sqrt(2 * friction * step_size) * noise
        logdensity, grad = jax.value_and_grad(logdensity_fn)(x)
        work = (
            state.logdensity
            - logdensity
            + _kinetic_energy(kicked)
            - _kinetic_energy(state.momentum)
        )
        return accept_if_finite(state, KineticState(x, v, logdensity, grad), work)

    def baoab(key, state, logdensity_fn, step_size, friction):
        x, v, _, grad = state
        v = v + 0.5 * step_size * grad
        x = x + 0.5 * step_size * v
        before_o = v
        v = _ornstein_uhlenbeck(key, v, friction, step_size)
        heat = _kinetic_energy(v) - _kinetic_energy(before_o)
        x = x + 0.5 * step_size * v
        logdensity, grad = jax.value_and_grad(logdensity_fn)(x)
        v = v + 0.5 * step_size * grad
        total = (
            state.logdensity - logdensity + _kinetic_energy(v) - _kinetic_energy(state.momentum)
        )
        return accept_if_finite(state, KineticState(x, v, logdensity, grad), total - heat)

    def obabo(key, state, logdensity_fn, step_size, friction):
        first_key, accept_key, last_key = jax.random.split(key, 3)
        leapfrog = velocity_verlet(logdensity_fn, lambda p: 0.5 * jnp.sum(p**2))
        v = _ornstein_uhlenbeck(first_key, state.momentum, friction, 0.5 * step_size)
        start = IntegratorState(state.position, v, state.logdensity, state.logdensity_grad)
        end = leapfrog(start, step_size)
        energy = lambda s: -s.logdensity + _kinetic_energy(s.momentum)
        work = energy(end) - energy(start)
        if metropolize:
            log_p_accept = safe_energy_diff(energy(start), energy(end))
            # a finite energy with a non-finite gradient must not be accepted either
            log_p_accept = jnp.where(all_finite(end), log_p_accept, -jnp.inf)
            flipped = start._replace(momentum=-start.momentum)
            end, (is_accepted, acceptance_rate, _) = static_binomial_sampling(
                accept_key, log_p_accept, flipped, end
            )
            diverging = jnp.isneginf(log_p_accept)
            info = KineticInfo(acceptance_rate, is_accepted, diverging, -log_p_accept)
        v = _ornstein_uhlenbeck(last_key, end.momentum, friction, 0.5 * step_size)
        new_state = KineticState(end.position, v, end.logdensity, end.logdensity_grad)
        if metropolize:
            return new_state, info
        return accept_if_finite(state, new_state, work)

    return {"euler": euler, "baoab": baoab, "obabo": obabo}[integrator]


@dataclasses.dataclass(frozen=True)
class KineticLangevinConfig(MassMatrixSettings):
    """Kinetic Langevin, tuned in warmup by default (see :func:`unadjusted_warmup_plan`):
    a diagonal mass matrix (Stan's windows) and the step size, Metropolized (OBABO only)
    by dual averaging to ``target_acceptance_rate``, unadjusted to an energy-error
    variance per dimension of ``desired_energy_variance`` (Robnik et al. 2023).

    The default 5e-4 is Robnik et al.'s. Measured on a whitened Gaussian (the case after
    mass-matrix adaptation: unit curvature, friction 2, d = 10; interpolated from
    fixed-step runs), ``E[W^2] / d`` of the shadow work W is 5e-4 at BAOAB h = 0.32
    (position variance exact on Gaussians, Leimkuhler and Matthews 2013), OBABO h = 0.45
    (stationary position variance 5.3% too large) and Euler h = 0.08 (4.3% too large).
    """

    step_size: float = option(
        0.1, positive, "integrator step h (initial if adapted; fixed if num_warmup=0)"
    )
    friction: float = option(2.0, positive, "friction gamma (2 is critical for unit curvature)")
    integrator: str = option("baoab", one_of("euler", "baoab", "obabo"), "splitting scheme")
    metropolize: bool = option(False, boolean, "Metropolis-adjust (OBABO only)")
    adapt_step_size: bool = option(True, boolean, "adapt the step size in warmup")
    target_acceptance_rate: float = option(
        0.8,
        unit_interval,
        "dual-averaging target (Metropolized; unadjusted: of the tested warmup steps "
        "before the final window)",
    )
    desired_energy_variance: float = option(
        5e-4, positive, "unadjusted: Var[E]/dim the adapted step aims at (E: shadow work)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.metropolize and self.integrator != "obabo":
            raise ValueError(
                f"integrator must be 'obabo' when metropolize is True, got {self.integrator!r}"
            )


def unadjusted_warmup_plan(target: Target, config: Any) -> WarmupPlan:
    """The warmup of an unadjusted kinetic sampler's ``config`` (its ``num_warmup``,
    ``step_size``, ``adapt_step_size``, ``target_acceptance_rate``,
    ``desired_energy_variance``, ``inverse_mass_matrix``, ``adapt_mass_matrix``).

    Warmup steps are Metropolis-tested on their shadow work
    (:func:`~bayeswb.samplers.langevin.warmup.metropolis_tested`), so that a step the
    adaptation has not yet shrunk cannot throw the chain off; until the final fast window
    the step is dual-averaged to a tested acceptance of ``target_acceptance_rate`` (to
    explore while the mass matrix is learnt), then to ``Var[W] / d =
    desired_energy_variance`` (Robnik et al. 2023, "Microcanonical Hamiltonian Monte
    Carlo", JMLR 24: their rule for unadjusted integrators, with W the energy error).
    """
    return WarmupPlan(
        config.num_warmup,
        config.step_size,
        ENERGY_VARIANCE_TARGET if config.adapt_step_size else None,
        config.inverse_mass_matrix,
        adapts_mass_matrix(config),
        energy_variance_statistic(target.dim, config.desired_energy_variance),
        config.target_acceptance_rate,
    )


def kinetic_trace(adjusted: bool) -> TraceFn:
    """What a kinetic step reports: ``lp``, ``energy`` (see the module docstring),
    ``diverging``, ``step_size``, and ``acceptance_rate`` when ``adjusted``."""

    def trace(state: KineticState, info: KineticInfo, step_size: Array) -> Any:
        stats = {
            "lp": state.logdensity,
            "energy": -state.logdensity + 0.5 * jnp.sum(state.momentum**2),
            "diverging": info.diverging,
            "step_size": step_size,
        }
        if adjusted:
            stats["acceptance_rate"] = info.acceptance_rate
        return state.position, stats

    return trace


def _kinetic_langevin(target: Target, config: KineticLangevinConfig) -> LangevinMethod:
    kernel = functools.partial(
        kinetic_build_kernel(config.integrator, config.metropolize),
        friction=jnp.asarray(config.friction),
    )
    if config.metropolize:
        adapt = config.target_acceptance_rate if config.adapt_step_size else None
        plan = WarmupPlan(
            config.num_warmup,
            config.step_size,
            adapt,
            config.inverse_mass_matrix,
            adapts_mass_matrix(config),
        )
    else:
        plan = unadjusted_warmup_plan(target, config)
    return LangevinMethod(
        init=kinetic_init,
        kernel=kernel,
        trace=kinetic_trace(adjusted=config.metropolize),
        warmup=plan,
        warmup_test=None if config.metropolize else flip_momentum,
    )


KINETIC_LANGEVIN_KERNEL = langevin_chain_kernel(_kinetic_langevin, warmup_in_loop=True)


@register(
    "kinetic_langevin", KineticLangevinConfig, family="langevin", kernel=KINETIC_LANGEVIN_KERNEL
)
def run_kinetic_langevin(
    key: Array, target: Target, config: KineticLangevinConfig, layout: ChainLayout | None = None
) -> Draws:
    """Kinetic (underdamped) Langevin with the Euler, BAOAB or OBABO integrator, optionally
    Metropolis-adjusted (OBABO); see :func:`kinetic_build_kernel` for the schemes and
    references. Velocities start from N(0, I); they enter ``sample_stats.energy``
    (see the module docstring). By default the warmup estimates a diagonal mass matrix
    and adapts the step (:class:`KineticLangevinConfig`, :func:`unadjusted_warmup_plan`);
    ``inverse_mass_matrix``: a fixed diagonal mass instead.

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
