"""Microcanonical samplers: ``mclmc`` (unadjusted) and ``mams`` (Metropolis-adjusted).

Both move a position ``x`` with a velocity ``u`` of unit norm (in the coordinates whitened
by a diagonal preconditioner ``M^{-1/2}``) under the isokinetic dynamics of Robnik, De Luca,
Silverstein and Seljak (2023), "Microcanonical Hamiltonian Monte Carlo", JMLR 24, eq. 9:

    dx/dt = u,    du/dt = (I - u u^T) grad log p(x) / (d - 1),

whose marginal on ``x`` is ``p`` (``d`` the dimension). They integrate it with blackjax's
``isokinetic_mclachlan`` (the two-stage palindromic splitting of McLachlan 1995; its two
position updates each evaluate ``log p`` and its gradient once, so **2 gradient
evaluations per integration step**, the last gradient reused by the next step).

- ``mclmc`` (Robnik and Seljak 2024, "Fluctuation without dissipation: Microcanonical
  Langevin Monte Carlo") adds a partial refreshment of ``u`` after each half step,
  ``u <- (u + nu z) / |u + nu z|``, ``nu = sqrt((exp(2 eps / L) - 1) / d)``, ``z`` standard
  normal, and takes no Metropolis test: it is biased at any fixed step ``eps``. Each draw is
  one integration step.
- ``mams`` (Robnik, Cohn-Gordon and Seljak 2025, "Metropolis adjusted microcanonical
  Hamiltonian Monte Carlo") draws a fresh ``u`` uniformly on the sphere, integrates ``n``
  steps (``n`` random with mean ``L / eps``) and accepts the end point with probability
  ``min(1, exp(-W))``, ``W = -log p(x') + log p(x) + Delta K`` the energy error, where
  ``Delta K`` is the kinetic-energy change of the isokinetic integrator (their eq. 7-9):
  exact for any step. Each draw costs ``2 n`` gradients, reported as ``n_steps``.

Both are blackjax's kernels tuned by blackjax's own tuners, run in each chain's ``start``
(``blackjax.mclmc_find_L_and_step_size``, ``blackjax.adjusted_mclmc_find_L_and_step_size``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import blackjax
import jax
import jax.numpy as jnp
from blackjax.adaptation.mclmc_adaptation import MCLMCAdaptationState
from blackjax.mcmc import adjusted_mclmc_dynamic, mclmc
from blackjax.mcmc.integrators import isokinetic_mclachlan

from bayeswb.core.config import (
    INT_LIMIT,
    SamplerConfig,
    boolean,
    option,
    positive,
    unit_interval,
)
from bayeswb.core.draws import Draws
from bayeswb.core.sampler import ChainKernel
from bayeswb.core.target import Target
from bayeswb.execution.driver import ChainLayout
from bayeswb.execution.kernel import run_whole
from bayeswb.samplers import register
from bayeswb.samplers.langevin.divergence import all_finite

Array = jax.Array

# log p and its gradient are evaluated twice per step of the isokinetic McLachlan
# integrator (blackjax's generalized_two_stage_integrator with coefficients
# [b1, a1, b2, a1, b1]: one gradient per position update a1)
GRADS_PER_INTEGRATION_STEP = 2
# the fewest warmup steps the tuners are given: below this blackjax's stages are empty
# (the adjusted tuner then returns the dual-averaging state's initial step size, 1.0)
MIN_WARMUP = 10
# the largest mean number of integration steps of a mams proposal
MAX_MEAN_STEPS = 1000

__all__ = [
    "MAMSConfig",
    "MCLMCConfig",
    "MicrocanonicalCarry",
    "mclmc_tuning_steps",
    "run_mams",
    "run_mclmc",
]


def _warmup_steps(value: Any) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool)
    ok = ok and (value == 0 or MIN_WARMUP <= value < INT_LIMIT)
    return None if ok else f"must be 0 (no tuning) or an integer >= {MIN_WARMUP}"


def _mean_steps(value: Any) -> str | None:
    # blackjax's adjusted tuner clamps eps <= L / 1.1 while it adapts; the mean length
    # is a request for work, so it is bounded
    ok = isinstance(value, float) and 1.1 < value <= MAX_MEAN_STEPS
    return None if ok else f"must be a number above 1.1 and at most {MAX_MEAN_STEPS}"


def _check_dim(target: Target) -> None:
    # the isokinetic momentum update divides by d - 1
    if target.dim < 2:
        raise ValueError(f"microcanonical samplers need dim >= 2, got {target.name} of dim 1")


class MicrocanonicalCarry(NamedTuple):
    """What a microcanonical chain carries between draws.

    state:               blackjax's kernel state (``IntegratorState`` for mclmc,
                         ``DynamicHMCState`` for mams)
    L:                   the momentum decoherence length (mclmc) or mean trajectory
                         length (mams), in the coordinates of the preconditioner
    step_size:           the integration step ``eps``
    inverse_mass_matrix: the diagonal preconditioner, shape (dim,)
    """

    state: Any
    L: Array
    step_size: Array
    inverse_mass_matrix: Array


def _initial(target: Target, position: Array, L_per_sqrt_dim: float, eps_per_sqrt_dim: float):
    """Untuned L, step and preconditioner: the tuners' own starting point scaled by
    ``sqrt(dim)`` (the isokinetic velocity has unit norm, so a step moves each of ``d``
    unit-scale coordinates by about ``eps / sqrt(d)``)."""
    sqrt_dim = math.sqrt(target.dim)
    dtype = position.dtype
    return (
        jnp.asarray(L_per_sqrt_dim * sqrt_dim, dtype),
        jnp.asarray(eps_per_sqrt_dim * sqrt_dim, dtype),
        jnp.ones(target.dim, dtype),
    )


# --------------------------------------------------------------------------- MCLMC


def mclmc_tuning_steps(num_warmup: int, diagonal_preconditioning: bool) -> int:
    """Integration steps ``blackjax.mclmc_find_L_and_step_size`` takes when this module
    gives it ``num_steps = num_warmup`` and its stage fractions (:func:`_mclmc_fractions`).

    Read from blackjax 1.7's source: stage 1 (step size only) ``n1 = round(W f1)`` steps;
    stage 2 (step size and the running moments of x) ``n2 = round(W f2)``; with the
    diagonal preconditioner (and ``n2 > 1``) ``round(n2 / 3)`` more at the new metric;
    stage 3 (L from the autocorrelation, if ``n3 >= 2``) ``n3 = round(W f3)``. (blackjax's
    own returned count adds ``n2 // 3`` for the preconditioner stage, which differs from
    the ``round(n2 / 3)`` steps it runs when ``n2 % 3 == 2``.) Python's ``round`` (to even).

    Example:
        >>> mclmc_tuning_steps(500, True), mclmc_tuning_steps(500, False)
        (500, 501)
    """
    f1, f2, f3 = _mclmc_fractions(diagonal_preconditioning)
    n1, n2, n3 = round(num_warmup * f1), round(num_warmup * f2), round(num_warmup * f3)
    preconditioner = round(n2 / 3) if diagonal_preconditioning and n2 > 1 else 0
    return n1 + n2 + preconditioner + (n3 if n3 >= 2 else 0)


def _mclmc_fractions(diagonal_preconditioning: bool) -> tuple[float, float, float]:
    # blackjax's stages in its default proportions 1 : 1 : 1 (plus a third of stage 2
    # for the preconditioner), scaled so that they fill num_warmup
    fraction = 0.3 if diagonal_preconditioning else 1.0 / 3.0
    return fraction, fraction, fraction


@dataclasses.dataclass(frozen=True)
class MCLMCConfig(SamplerConfig):
    """Microcanonical Langevin Monte Carlo, tuned in warmup by blackjax's
    ``mclmc_find_L_and_step_size`` (Robnik et al. 2023, sec. "Tuning"; Robnik and Seljak
    2024): the step ``eps`` so that the energy change ``E`` of a step has
    ``Var[E] / d = desired_energy_variance`` (a dual-averaged fit of ``Var[E] ~ eps^6``),
    the diagonal preconditioner from the chain's moments, and ``L`` from the chain's
    autocorrelation (``L = 0.4 eps tau``, ``tau`` the integrated autocorrelation time in
    steps). ``num_warmup`` steps are split over the stages (:func:`mclmc_tuning_steps`).

    The bias: for a Gaussian target the asymptotic relative bias of second moments is
    bounded by the energy-error variance per dimension (Robnik and Seljak 2024,
    "Controlling the asymptotic bias of the unadjusted (microcanonical) Hamiltonian and
    Langevin Monte Carlo"); Robnik et al.'s 5e-4 keeps it about 2% of a variance.

    ``num_warmup=0``: no tuning; ``L = L_per_sqrt_dim * sqrt(dim)``, ``eps =
    step_size_per_sqrt_dim * sqrt(dim)`` (defaults ``sqrt(dim)`` and ``0.25 sqrt(dim)``,
    blackjax's tuner's own starting point, where it also starts otherwise) and no
    preconditioning.
    """

    num_warmup: int = option(
        500, _warmup_steps, f"tuning steps per chain (0: none; else >= {MIN_WARMUP})"
    )
    step_size_per_sqrt_dim: float = option(
        0.25, positive, "eps / sqrt(dim): tuner's start, or the step if num_warmup=0"
    )
    L_per_sqrt_dim: float = option(
        1.0, positive, "L / sqrt(dim): tuner's start, or L if num_warmup=0"
    )
    desired_energy_variance: float = option(
        5e-4, positive, "Var[E]/dim the tuned step aims at (E: a step's energy change)"
    )
    diagonal_preconditioning: bool = option(
        True, boolean, "tune a diagonal preconditioner in warmup"
    )


def _mclmc_kernel(config: MCLMCConfig) -> Callable[..., Any]:
    # desired_energy_var here only sets blackjax's rejection cutoff of high-energy steps,
    # which stays off (desired_energy_var_max_ratio = inf)
    return mclmc.build_kernel(
        integrator=isokinetic_mclachlan, desired_energy_var=config.desired_energy_variance
    )


def _mclmc_start(key: Array, target: Target, config: MCLMCConfig) -> tuple[Any, None, Array]:
    _check_dim(target)
    position_key, init_key, tune_key = jax.random.split(key, 3)
    position = target.init(position_key)
    state = mclmc.init(position, target.log_density, init_key)
    L, step_size, inverse_mass_matrix = _initial(
        target, position, config.L_per_sqrt_dim, config.step_size_per_sqrt_dim
    )
    if config.num_warmup > 0:
        f1, f2, f3 = _mclmc_fractions(config.diagonal_preconditioning)
        state, params, _ = blackjax.mclmc_find_L_and_step_size(
            mclmc_kernel=_mclmc_kernel(config),
            num_steps=config.num_warmup,
            state=state,
            rng_key=tune_key,
            logdensity_fn=target.log_density,
            frac_tune1=f1,
            frac_tune2=f2,
            frac_tune3=f3,
            desired_energy_var=config.desired_energy_variance,
            diagonal_preconditioning=config.diagonal_preconditioning,
            params=MCLMCAdaptationState(L, step_size, inverse_mass_matrix),
        )
        L, step_size = params.L, params.step_size
        inverse_mass_matrix = params.inverse_mass_matrix
    steps = mclmc_tuning_steps(config.num_warmup, config.diagonal_preconditioning)
    start_grads = 1 + GRADS_PER_INTEGRATION_STEP * (steps if config.num_warmup > 0 else 0)
    carry = MicrocanonicalCarry(
        state,
        jnp.asarray(L, position.dtype),
        jnp.asarray(step_size, position.dtype),
        jnp.asarray(inverse_mass_matrix, position.dtype),
    )
    return carry, None, jnp.asarray(start_grads)


def _mclmc_step(
    key: Array, carry: MicrocanonicalCarry, target: Target, config: MCLMCConfig
) -> tuple[MicrocanonicalCarry, tuple[Array, dict[str, Array]]]:
    state, info = _mclmc_kernel(config)(
        key,
        carry.state,
        target.log_density,
        carry.inverse_mass_matrix,
        carry.L,
        carry.step_size,
    )
    # blackjax reverts a non-finite step (position, momentum, log density or energy
    # change) to the previous state with a fresh momentum and reports nonans=False
    stats = {
        "lp": state.logdensity,
        "diverging": jnp.logical_not(info.nonans),
        "energy_change": info.energy_change,
        "step_size": carry.step_size,
        "L": carry.L,
    }
    return carry._replace(state=state), (state.position, stats)


MCLMC_KERNEL = ChainKernel(
    _mclmc_start,
    _mclmc_step,
    grads=lambda stats: jnp.full_like(
        stats["diverging"], GRADS_PER_INTEGRATION_STEP, dtype=jnp.int32
    ),
)


@register("mclmc", MCLMCConfig, family="langevin", kernel=MCLMC_KERNEL)
def run_mclmc(
    key: Array, target: Target, config: MCLMCConfig, layout: ChainLayout | None = None
) -> Draws:
    """Microcanonical Langevin Monte Carlo (Robnik, De Luca, Silverstein and Seljak 2023,
    JMLR 24, eq. 9 for the isokinetic dynamics; Robnik and Seljak 2024 for the Langevin
    momentum noise), blackjax's ``mclmc`` kernel with the isokinetic McLachlan integrator,
    after blackjax's ``mclmc_find_L_and_step_size`` in each chain's warmup (the energy
    rule ``Var[E] / d = desired_energy_variance``, see :class:`MCLMCConfig`).

    Unadjusted: every step is kept, so the chain is biased by the step's discretisation
    error (see :class:`MCLMCConfig`). A non-finite step is rejected and flagged
    ``diverging``. Stats: ``lp``, ``diverging``, ``energy_change`` (``E`` of the step),
    ``step_size``, ``L``. Cost: one gradient per chain at the start, two per integration
    step, warmup included (:func:`mclmc_tuning_steps`).

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample("gaussian", "mclmc", num_chains=2, num_samples=200, num_warmup=100)
        >>> r.idata.sample_stats["L"].shape, r.cost["n_grad_evals"]
        ((2, 200), 1202)
    """
    return run_whole(key, target, config, MCLMC_KERNEL, layout)


# --------------------------------------------------------------------------- MAMS

# blackjax's adjusted tuner with frac_tune1 = frac_tune2 = 1/3 (frac_tune3 = 0):
# int(W/3) + int(W/3) proposals in its first dual-averaging pass, int(W/3) in the second
MAMS_FRACTION = 1.0 / 3.0


@dataclasses.dataclass(frozen=True)
class MAMSConfig(SamplerConfig):
    """Metropolis-adjusted microcanonical sampler, tuned in warmup by blackjax's
    ``adjusted_mclmc_find_L_and_step_size``: dual averaging of the step to
    ``target_acceptance_rate`` (Hoffman and Gelman 2014, eq. 6) at a fixed mean number
    of integration steps ``L / eps = num_integration_steps``, then the diagonal
    preconditioner from the chain's moments and a second dual-averaging pass. The
    ``num_warmup`` proposals go a third to each of the three passes.

    Each proposal takes ``n = ceil(U s)`` steps (``U`` uniform, ``s`` such that the mean
    of ``n`` is ``L / eps``; blackjax's ``make_random_trajectory_length_fn``), which
    avoids the resonances of a fixed length.

    ``num_warmup=0``: no tuning; ``eps = step_size_per_sqrt_dim * sqrt(dim)`` (default
    ``0.2 sqrt(dim)``, blackjax's tuner's start), ``L = num_integration_steps * eps``,
    no preconditioning.
    """

    num_warmup: int = option(
        500, _warmup_steps, f"tuning proposals per chain (0: none; else >= {MIN_WARMUP})"
    )
    target_acceptance_rate: float = option(0.9, unit_interval, "dual-averaging target")
    num_integration_steps: float = option(
        2.0, _mean_steps, "mean integration steps per proposal, L / eps"
    )
    step_size_per_sqrt_dim: float = option(
        0.2, positive, "eps / sqrt(dim): tuner's start, or the step if num_warmup=0"
    )
    diagonal_preconditioning: bool = option(
        True, boolean, "tune a diagonal preconditioner in warmup"
    )


def _mams_kernel() -> Callable[..., Any]:
    return adjusted_mclmc_dynamic.build_kernel(
        integration_steps_fn=adjusted_mclmc_dynamic.make_random_trajectory_length_fn(True),
        integrator=isokinetic_mclachlan,
    )


def _raw_key(key: Array) -> Array:
    # the kernel state carries the key of its trajectory lengths; blackjax's tuner maps
    # nan_to_num over the state, which takes plain uint32 key data, not a typed key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    return key


def _mams_start(key: Array, target: Target, config: MAMSConfig) -> tuple[Any, None, Array]:
    _check_dim(target)
    position_key, length_key, tune_key = jax.random.split(key, 3)
    position = target.init(position_key)
    state = adjusted_mclmc_dynamic.init(position, target.log_density, _raw_key(length_key))
    _, step_size, inverse_mass_matrix = _initial(
        target, position, 1.0, config.step_size_per_sqrt_dim
    )
    L = config.num_integration_steps * step_size
    tuning_steps = jnp.asarray(0)
    if config.num_warmup > 0:
        state, params, tuning_steps = blackjax.adjusted_mclmc_find_L_and_step_size(
            mclmc_kernel=_mams_kernel(),
            logdensity_fn=target.log_density,
            num_steps=config.num_warmup,
            state=state,
            rng_key=tune_key,
            target=config.target_acceptance_rate,
            frac_tune1=MAMS_FRACTION,
            frac_tune2=MAMS_FRACTION,
            frac_tune3=0.0,
            diagonal_preconditioning=config.diagonal_preconditioning,
            params=MCLMCAdaptationState(L, step_size, inverse_mass_matrix),
            target_num_integration_steps=config.num_integration_steps,
        )
        L, step_size = params.L, params.step_size
        inverse_mass_matrix = params.inverse_mass_matrix
    carry = MicrocanonicalCarry(
        state,
        jnp.asarray(L, position.dtype),
        jnp.asarray(step_size, position.dtype),
        jnp.asarray(inverse_mass_matrix, position.dtype),
    )
    # the tuner's summed integration steps of this chain's proposals (each below
    # 2 L / eps): a few thousand, far from wrapping int32
    start_grads = 1 + GRADS_PER_INTEGRATION_STEP * jnp.asarray(tuning_steps, jnp.int32)
    return carry, None, start_grads


def _mams_step(
    key: Array, carry: MicrocanonicalCarry, target: Target, config: MAMSConfig
) -> tuple[MicrocanonicalCarry, tuple[Array, dict[str, Array]]]:
    state, info = _mams_kernel()(
        key,
        carry.state,
        target.log_density,
        carry.step_size,
        inverse_mass_matrix=carry.inverse_mass_matrix,
        integration_steps_params=(carry.L / carry.step_size,),
    )
    # blackjax flags an energy error above 1000 (a NaN one counts as infinite) and
    # rejects a NaN one; a non-finite end point is flagged too (its energy error is NaN
    # or infinite, so it is rejected)
    end = info.proposal
    diverging = info.is_divergent | ~all_finite(end.position, end.logdensity)
    stats = {
        "lp": state.logdensity,
        "acceptance_rate": info.acceptance_rate,
        "diverging": diverging,
        "n_steps": info.num_integration_steps,
        "step_size": carry.step_size,
        "L": carry.L,
    }
    return carry._replace(state=state), (state.position, stats)


MAMS_KERNEL = ChainKernel(
    _mams_start,
    _mams_step,
    grads=lambda stats: GRADS_PER_INTEGRATION_STEP * stats["n_steps"].astype(jnp.int32),
)


@register("mams", MAMSConfig, family="langevin", kernel=MAMS_KERNEL)
def run_mams(
    key: Array, target: Target, config: MAMSConfig, layout: ChainLayout | None = None
) -> Draws:
    """Metropolis-adjusted microcanonical sampler (Robnik, Cohn-Gordon and Seljak 2025,
    "Metropolis adjusted microcanonical Hamiltonian Monte Carlo"): blackjax's
    ``adjusted_mclmc_dynamic`` kernel (isokinetic McLachlan integrator, a fresh unit
    velocity per proposal, a random number of steps with mean ``L / eps``) accepting the
    end point with probability ``min(1, exp(-W))``, ``W`` the energy error including the
    isokinetic kinetic-energy change; tuned in warmup by blackjax's
    ``adjusted_mclmc_find_L_and_step_size`` to ``target_acceptance_rate`` (see
    :class:`MAMSConfig`). Exact for any step.

    Stats: ``lp``, ``acceptance_rate``, ``diverging``, ``n_steps`` (integration steps of
    the proposal), ``step_size``, ``L``. Cost: one gradient per chain at the start, two
    per integration step, warmup included (the tuner's count of its proposals' steps).

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample("gaussian", "mams", num_chains=2, num_samples=200, num_warmup=150)
        >>> r.idata.sample_stats["acceptance_rate"].shape
        (2, 200)
    """
    return run_whole(key, target, config, MAMS_KERNEL, layout)
