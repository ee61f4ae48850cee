"""Overdamped Langevin samplers: ``ula`` and ``mala``.

Both run blackjax's own pieces (the overdamped-Langevin Euler-Maruyama step, the MALA
kernel) on the whitened density of a diagonal preconditioner (see
:mod:`bayeswb.samplers.langevin.preconditioning`), fixed or estimated in warmup
(:mod:`bayeswb.samplers.langevin.warmup`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import blackjax
import jax
from blackjax.mcmc.diffusions import DiffusionState, overdamped_langevin

from bayeswb.core.config import SamplerConfig, boolean, option, positive, unit_interval
from bayeswb.core.draws import Draws
from bayeswb.core.target import Target
from bayeswb.execution.driver import ChainLayout
from bayeswb.execution.kernel import run_whole
from bayeswb.samplers import register
from bayeswb.samplers.langevin.chain_kernel import LangevinMethod, langevin_chain_kernel
from bayeswb.samplers.langevin.divergence import keep_if_finite
from bayeswb.samplers.langevin.preconditioning import positive_tuple_or_none
from bayeswb.samplers.langevin.warmup import WarmupPlan, check_mass_matrix_options

Array = jax.Array

# --------------------------------------------------------------------------- ULA


class ULAInfo(NamedTuple):
    """diverging: the proposed step was not finite and was rejected."""

    diverging: Array


def ula_init(position: Array, logdensity_fn: Callable[[Array], Array]) -> DiffusionState:
    """State at ``position`` (one gradient evaluation)."""
    logdensity, logdensity_grad = jax.value_and_grad(logdensity_fn)(position)
    return DiffusionState(position, logdensity, logdensity_grad)


def ula_build_kernel() -> Callable[..., tuple[DiffusionState, ULAInfo]]:
    """The unadjusted Langevin algorithm (Euler-Maruyama for the overdamped diffusion
    ``dX = grad log p(X) dt + sqrt(2) dW``; Roberts and Tweedie 1996, eq. 1.3; Durmus and
    Moulines 2017, eq. 2): ``x' = x + h grad log p(x) + sqrt(2 h) xi``.

    The step is blackjax's ``mcmc.diffusions.overdamped_langevin``; this kernel only adds
    the rejection of non-finite steps. One gradient evaluation per step.
    """

    def kernel(
        key: Array,
        state: DiffusionState,
        logdensity_fn: Callable[[Array], Array],
        step_size: Array,
    ) -> tuple[DiffusionState, ULAInfo]:
        euler_maruyama = overdamped_langevin(jax.value_and_grad(logdensity_fn))
        new_state = euler_maruyama(key, state, step_size)
        new_state, diverging = keep_if_finite(state, DiffusionState(*new_state))
        return new_state, ULAInfo(diverging)

    return kernel


@dataclasses.dataclass(frozen=True)
class ULAConfig(SamplerConfig):
    """Unadjusted Langevin; ``num_warmup`` steps are burn-in (and preconditioner fitting).

    The chain is biased at any fixed step size: on a Gaussian coordinate of variance
    ``s**2`` with preconditioner ``m`` its stationary variance is
    ``s**2 / (1 - h m / (2 s**2))`` (stable for ``h m < 2 s**2``).
    """

    step_size: float = option(0.01, positive, "Euler-Maruyama step h")
    inverse_mass_matrix: tuple[float, ...] | None = option(
        None, positive_tuple_or_none, "fixed diagonal preconditioner (None: identity)"
    )
    adapt_mass_matrix: bool = option(
        False, boolean, "estimate a diagonal preconditioner in the first half of warmup"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_mass_matrix_options(self)


def unadjusted_trace(state: Any, info: Any, step_size: Array) -> tuple[Any, dict[str, Array]]:
    """What a step of an unadjusted kernel with a ``diverging`` info reports."""
    stats = {"lp": state.logdensity, "diverging": info.diverging, "step_size": step_size}
    return state.position, stats


def _ula(target: Target, config: ULAConfig) -> LangevinMethod:
    return LangevinMethod(
        init=lambda key, position, logdensity_fn: ula_init(position, logdensity_fn),
        kernel=ula_build_kernel(),
        trace=unadjusted_trace,
        warmup=WarmupPlan(
            config.num_warmup,
            config.step_size,
            inverse_mass_matrix=config.inverse_mass_matrix,
            adapt_mass_matrix=config.adapt_mass_matrix,
        ),
    )


ULA_KERNEL = langevin_chain_kernel(_ula)


@register("ula", ULAConfig, family="langevin", kernel=ULA_KERNEL)
def run_ula(
    key: Array, target: Target, config: ULAConfig, layout: ChainLayout | None = None
) -> Draws:
    """Unadjusted Langevin algorithm (see :func:`ula_build_kernel`), optionally with a
    diagonal preconditioner, fixed or estimated from the first half of warmup.

    Runs whole or in chunks (:data:`ULA_KERNEL`, :mod:`bayeswb.execution.kernel`).
    Cost: one gradient per chain at the start and one per step (warmup included).

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample("gaussian", "ula", num_chains=2, num_samples=200, step_size=0.01)
        >>> r.idata.sample_stats["step_size"].shape
        (2, 200)
    """
    return run_whole(key, target, config, ULA_KERNEL, layout)


# --------------------------------------------------------------------------- MALA


@dataclasses.dataclass(frozen=True)
class MALAConfig(SamplerConfig):
    """Metropolis-adjusted Langevin with dual-averaging step size adaptation in warmup.

    With ``adapt_mass_matrix`` the warmup is two halves: the first adapts the step size
    and estimates a diagonal inverse mass matrix from its second quarter; the second
    re-adapts the step size with that preconditioner.
    """

    step_size: float = option(0.01, positive, "initial step h (fixed if num_warmup=0)")
    target_acceptance_rate: float = option(
        0.574, unit_interval, "dual-averaging target (Roberts and Rosenthal 1998: 0.574)"
    )
    inverse_mass_matrix: tuple[float, ...] | None = option(
        None, positive_tuple_or_none, "fixed diagonal inverse mass matrix (None: identity)"
    )
    adapt_mass_matrix: bool = option(
        False, boolean, "estimate a diagonal inverse mass matrix in warmup"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_mass_matrix_options(self)


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
            config.adapt_mass_matrix,
        ),
    )


MALA_KERNEL = langevin_chain_kernel(_mala)


@register("mala", MALAConfig, family="langevin", kernel=MALA_KERNEL)
def run_mala(
    key: Array, target: Target, config: MALAConfig, layout: ChainLayout | None = None
) -> Draws:
    """Metropolis-adjusted Langevin algorithm (Roberts and Tweedie 1996, section 1.4;
    Besag 1994): blackjax's ``mala`` kernel, run on the whitened density for a diagonal
    mass matrix (see :mod:`bayeswb.samplers.langevin.preconditioning`), with step size
    adapted by dual averaging (Hoffman and Gelman 2014, eq. 6) to
    ``target_acceptance_rate`` during warmup.
    ``step_size`` is blackjax's h in ``x' = x + h grad log p(x) + sqrt(2h) xi``.

    A non-finite proposal is rejected by blackjax (acceptance 0) and flagged diverging.
    Runs whole or in chunks (:data:`MALA_KERNEL`, :mod:`bayeswb.execution.kernel`).
    Cost: one gradient per chain at the start and one per step (warmup included).

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample("gaussian", "mala", num_chains=2, num_samples=200, num_warmup=200)
        >>> float(r.idata.sample_stats["acceptance_rate"].mean()) > 0.3
        True
    """
    return run_whole(key, target, config, MALA_KERNEL, layout)
