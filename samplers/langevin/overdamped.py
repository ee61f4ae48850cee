"""Overdamped Langevin samplers: ``ula`` and ``mala``.

Both run blackjax's own pieces (the overdamped-Langevin Euler-Maruyama step, the MALA
kernel) on the whitened density of a diagonal preconditioner (see
:mod:`bayeswb.samplers.langevin.preconditioning`), fixed or estimated in warmup
(:mod:`bayeswb.samplers.langevin.warmup`).

Defaults tune both samplers in warmup: the diagonal mass matrix (Stan's windows) and the
step size, MALA's to an acceptance rate, ULA's to an energy-error variance (it has no
acceptance; see :class:`ULAConfig`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import blackjax
import jax
import jax.numpy as jnp
from blackjax.mcmc.diffusions import DiffusionState, overdamped_langevin
from blackjax.mcmc.proposal import compute_asymmetric_acceptance_ratio

from bayeswb.core.config import boolean, option, positive, unit_interval
from bayeswb.core.draws import Draws
from bayeswb.core.target import Target
from bayeswb.execution.driver import ChainLayout
from bayeswb.execution.kernel import run_whole
from bayeswb.samplers import register
from bayeswb.samplers.langevin.chain_kernel import LangevinMethod, langevin_chain_kernel
from bayeswb.samplers.langevin.divergence import keep_if_finite
from bayeswb.samplers.langevin.warmup import (
    ENERGY_VARIANCE_TARGET,
    MassMatrixSettings,
    WarmupPlan,
    adapts_mass_matrix,
    energy_variance_statistic,
    stay,
)

Array = jax.Array

# --------------------------------------------------------------------------- ULA

# Roberts and Rosenthal (1998), "Optimal scaling of discrete approximations to Langevin
# diffusions", JRSS B 60: the acceptance rate of MALA at its optimal step in high dimension
MALA_OPTIMAL_ACCEPTANCE_RATE = 0.574


class ULAInfo(NamedTuple):
    """energy_error: minus the log Metropolis-Hastings ratio MALA would have used for
    this step (its acceptance would be ``min(1, exp(-energy_error))``); diverging: the
    proposed step was not finite and was rejected."""

    energy_error: Array
    diverging: Array


def euler_maruyama_transition_energy(
    state: DiffusionState, new_state: DiffusionState, step_size: Array
) -> Array:
    """``-log p(x') - log q(x | x')`` up to a constant, with ``q(x | x') =
    N(x; x' + h grad log p(x'), 2 h I)`` the Euler-Maruyama proposal density (Roberts and
    Tweedie 1996, eq. 1.4): the energy whose difference is MALA's log acceptance ratio.

    Example:
        >>> import jax.numpy as jnp
        >>> s = DiffusionState(jnp.zeros(1), jnp.array(0.0), jnp.zeros(1))
        >>> t = DiffusionState(jnp.ones(1), jnp.array(-0.5), -jnp.ones(1))
        >>> float(euler_maruyama_transition_energy(t, s, jnp.array(0.5)))
        0.5
    """
    residual = state.position - new_state.position - step_size * new_state.logdensity_grad
    return -new_state.logdensity + jnp.sum(residual**2) / (4.0 * step_size)


def ula_init(position: Array, logdensity_fn: Callable[[Array], Array]) -> DiffusionState:
    """State at ``position`` (one gradient evaluation)."""
    logdensity, logdensity_grad = jax.value_and_grad(logdensity_fn)(position)
    return DiffusionState(position, logdensity, logdensity_grad)


def ula_build_kernel() -> Callable[..., tuple[DiffusionState, ULAInfo]]:
    """The unadjusted Langevin algorithm (Euler-Maruyama for the overdamped diffusion
    ``dX = grad log p(X) dt + sqrt(2) dW``; Roberts and Tweedie 1996, eq. 1.3; Durmus and
    Moulines 2017, eq. 2): ``x' = x + h grad log p(x) + sqrt(2 h) xi``.

    The step is blackjax's ``mcmc.diffusions.overdamped_langevin``; this kernel adds the
    rejection of non-finite steps and reports the step's energy error, minus the log
    acceptance ratio of MALA for the same proposal (Roberts and Tweedie 1996, eq. 1.5,
    by blackjax's ``compute_asymmetric_acceptance_ratio``): zero for an exact diffusion
    step, so a measure of the discretisation error, from the gradient the next step needs
    anyway. One gradient evaluation per step.
    """
    log_acceptance_ratio = compute_asymmetric_acceptance_ratio(euler_maruyama_transition_energy)

    def kernel(
        key: Array,
        state: DiffusionState,
        logdensity_fn: Callable[[Array], Array],
        step_size: Array,
    ) -> tuple[DiffusionState, ULAInfo]:
        euler_maruyama = overdamped_langevin(jax.value_and_grad(logdensity_fn))
        proposal = DiffusionState(*euler_maruyama(key, state, step_size))
        energy_error = -log_acceptance_ratio(state, proposal, step_size=step_size)
        new_state, diverging = keep_if_finite(state, proposal)
        return new_state, ULAInfo(energy_error, diverging)

    return kernel


@dataclasses.dataclass(frozen=True)
class ULAConfig(MassMatrixSettings):
    """Unadjusted Langevin, tuned in warmup by default: a diagonal preconditioner (Stan's
    windows, see :mod:`bayeswb.samplers.langevin.warmup`) and the step size.

    The chain is biased at any fixed step size: on a Gaussian coordinate of variance
    ``s**2`` with preconditioner ``m`` its stationary variance is
    ``s**2 / (1 - h m / (2 s**2))`` (stable for ``h m < 2 s**2``). ULA has no acceptance
    to tune to, so the step is set so that the energy error ``E`` of a step (minus MALA's
    log acceptance ratio for it, :func:`ula_build_kernel`) has ``Var[E] / d`` equal to
    ``desired_energy_variance`` (the rule of Robnik et al. 2023, "Microcanonical
    Hamiltonian Monte Carlo"). On a whitened Gaussian (``m = s**2``) ``E[E^2] / d`` is
    0.5 h^3 in any dimension (measured: 5.1e-4 at h = 0.1, 6.4e-5 at h = 0.05, d = 1 to
    100), so the default 1e-4 gives h = 0.058 and a stationary variance 3% (sd 1.5%)
    too large in every dimension, below the Monte Carlo error of a default run (a few %
    on an sd), where Robnik et al.'s 5e-4 (made for second-order integrators) would give
    h = 0.1 and 5%. A fixed MALA-acceptance target would instead shrink the step as
    ``d**(-1/3)``.

    Warmup steps are Metropolis-tested (they are MALA steps, so a chain started in the
    tails cannot be thrown off), at MALA's efficient step (acceptance 0.574) while the
    mass matrix is learnt; the final fast window (the second half without mass-matrix
    adaptation) tunes the step of the draws to the energy rule.
    """

    step_size: float = option(
        0.01, positive, "Euler-Maruyama step h (initial if adapted; fixed if num_warmup=0)"
    )
    adapt_step_size: bool = option(True, boolean, "adapt the step size in warmup")
    desired_energy_variance: float = option(
        1e-4, positive, "Var[E]/dim the adapted step aims at (E: a step's energy error)"
    )


def unadjusted_trace(state: Any, info: Any, step_size: Array) -> tuple[Any, dict[str, Array]]:
    """What a step of an unadjusted kernel with a ``diverging`` info reports."""
    stats = {"lp": state.logdensity, "diverging": info.diverging, "step_size": step_size}
    return state.position, stats


def _ula(target: Target, config: ULAConfig) -> LangevinMethod:
    return LangevinMethod(
        init=lambda key, position, logdensity_fn: ula_init(position, logdensity_fn),
        kernel=ula_build_kernel(),
        warmup_test=stay,
        trace=unadjusted_trace,
        warmup=WarmupPlan(
            config.num_warmup,
            config.step_size,
            ENERGY_VARIANCE_TARGET if config.adapt_step_size else None,
            config.inverse_mass_matrix,
            adapts_mass_matrix(config),
            energy_variance_statistic(target.dim, config.desired_energy_variance),
            explore_acceptance_rate=MALA_OPTIMAL_ACCEPTANCE_RATE,
        ),
    )


# warmup (Metropolis-tested) and draws run one kernel, in one loop
ULA_KERNEL = langevin_chain_kernel(_ula, warmup_in_loop=True)


@register("ula", ULAConfig, family="langevin", kernel=ULA_KERNEL)
def run_ula(
    key: Array, target: Target, config: ULAConfig, layout: ChainLayout | None = None
) -> Draws:
    """Unadjusted Langevin algorithm (Roberts and Tweedie 1996; Durmus and Moulines 2017;
    see :func:`ula_build_kernel`) with a diagonal preconditioner, estimated in warmup by
    default (or fixed), and a step size adapted in
    warmup by default to ``Var[E] / d = desired_energy_variance`` (Robnik et al. 2023;
    see :class:`ULAConfig` for the bias this leaves).

    Runs whole or in chunks (:data:`ULA_KERNEL`, :mod:`bayeswb.execution.kernel`).
    Cost: one gradient per chain at the start and one per step (warmup included).

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample("gaussian", "ula", num_chains=2, num_samples=200, num_warmup=200)
        >>> r.idata.sample_stats["step_size"].shape
        (2, 200)
    """
    return run_whole(key, target, config, ULA_KERNEL, layout)


# --------------------------------------------------------------------------- MALA


@dataclasses.dataclass(frozen=True)
class MALAConfig(MassMatrixSettings):
    """Metropolis-adjusted Langevin with dual-averaging step size adaptation in warmup
    and, by default, a diagonal inverse mass matrix estimated in Stan's warmup windows
    (see :mod:`bayeswb.samplers.langevin.warmup`).
    """

    step_size: float = option(0.01, positive, "initial step h (fixed if num_warmup=0)")
    target_acceptance_rate: float = option(
        MALA_OPTIMAL_ACCEPTANCE_RATE,
        unit_interval,
        "dual-averaging target (Roberts and Rosenthal 1998: 0.574)",
    )


def metropolis_trace(state: Any, info: Any, step_size: Array) -> tuple[Any, dict[str, Array]]:
    """What a step of a blackjax Metropolis-adjusted kernel reports."""
    stats = {
        "lp": state.logdensity,
        "acceptance_rate": info.acceptance_rate,
        # blackjax maps a non-finite proposal to acceptance exactly 0 (safe_energy_diff);
        # a finite one only reaches 0 when exp underflows, itself a blown-up step
        "diverging": info.acceptance_rate == 0.0,
        "step_size": step_size,
    }
    return state.position, stats


def _mala(target: Target, config: MALAConfig) -> LangevinMethod:
    return LangevinMethod(
        init=lambda key, position, logdensity_fn: blackjax.mala.init(position, logdensity_fn),
        kernel=blackjax.mala.build_kernel(),
        trace=metropolis_trace,
        warmup=WarmupPlan(
            config.num_warmup,
            config.step_size,
            config.target_acceptance_rate,
            config.inverse_mass_matrix,
            adapts_mass_matrix(config),
        ),
    )


# warmup and draws run one kernel: its warmup steps are the draws' loop's first steps
MALA_KERNEL = langevin_chain_kernel(_mala, warmup_in_loop=True)


@register("mala", MALAConfig, family="langevin", kernel=MALA_KERNEL)
def run_mala(
    key: Array, target: Target, config: MALAConfig, layout: ChainLayout | None = None
) -> Draws:
    """Metropolis-adjusted Langevin algorithm (Roberts and Tweedie 1996, section 1.4;
    Besag 1994): blackjax's ``mala`` kernel, run on the whitened density for a diagonal
    mass matrix (see :mod:`bayeswb.samplers.langevin.preconditioning`), with step size
    adapted by dual averaging (Hoffman and Gelman 2014, eq. 6) to
    ``target_acceptance_rate`` during warmup and, by default, the diagonal mass matrix
    estimated in Stan's windowed warmup (:mod:`bayeswb.samplers.langevin.warmup`).
    ``step_size`` is blackjax's h in ``x' = x + h grad log p(x) + sqrt(2h) xi``.

    A non-finite proposal is rejected by blackjax (acceptance 0) and flagged diverging.
    Runs whole or in chunks (:data:`MALA_KERNEL`, :mod:`bayeswb.execution.kernel`); the
    warmup steps are the first steps of the draws' loop, so the kernel compiles once.
    Cost: one gradient per chain at the start and one per step (warmup included).

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample("gaussian", "mala", num_chains=2, num_samples=200, num_warmup=200)
        >>> float(r.idata.sample_stats["acceptance_rate"].mean()) > 0.3
        True
    """
    return run_whole(key, target, config, MALA_KERNEL, layout)
