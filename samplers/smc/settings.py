"""Settings of the SMC family: the annealing loop's options shared by smc, ais,
smc_langevin and smc_flow, and each sampler's config."""

from __future__ import annotations

import dataclasses
from typing import Any

from bayeswb.core.config import (
    SamplerConfig,
    boolean,
    non_negative_int,
    one_of,
    option,
    optional,
    positive,
    positive_int,
    unit_interval,
)
from bayeswb.samplers.smc.moves import MCMC_MOVES, TRANSPORT_MOVES, Move
from bayeswb.samplers.smc.resampling import RESAMPLING_SCHEMES
from bayeswb.samplers.smc.tempering import SCHEDULES
from bayeswb.samplers.smc.tuning import FULL_WHITENING_MAX_DIM


def _non_negative(value: Any) -> str | None:
    """>= 0."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
    return None if ok else "must be a number >= 0"


def _fraction(value: Any) -> str | None:
    """In (0, 1]."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 1
    return None if ok else "must be a number in (0, 1]"


def move_check(names: tuple[str, ...]) -> Any:
    """The check of a ``move`` option: one of ``names`` or a :class:`~.moves.Move`."""

    def check(value: Any) -> str | None:
        if isinstance(value, Move) or (isinstance(value, str) and value in names):
            return None
        return f"must be one of {', '.join(map(repr, names))} or a smc.Move"

    return check


def _precondition_check(value: Any) -> str | None:
    """True, False, "full" or "diagonal"."""
    if isinstance(value, bool) or (isinstance(value, str) and value in ("full", "diagonal")):
        return None
    return "must be True, False, 'full' or 'diagonal'"


def _no_warmup(value: Any) -> str | None:
    """An annealing run has no warmup to set: a value other than 0 would be ignored."""
    if isinstance(value, int) and not isinstance(value, bool) and value == 0:
        return None
    return (
        "must be 0: smc, ais and smc_langevin have no warmup (they tune themselves in "
        "pilot runs: pilot_particles, fit_reference_particles)"
    )


@dataclasses.dataclass(frozen=True)
class AnnealingSettings(SamplerConfig):
    """Settings of the annealing loop shared by smc, ais, smc_langevin and smc_flow."""

    num_warmup: int = option(0, _no_warmup, "none: the family tunes itself in pilot runs")
    move: Any = option("mala", move_check(MCMC_MOVES), "MCMC kernel: name or smc.Move")
    num_mcmc_steps: int | None = option(
        None,
        optional(positive_int),
        "move sweeps per temperature (None: adaptive, until the particles have moved as far "
        "as independent draws would, at most max_mcmc_steps)",
    )
    max_mcmc_steps: int = option(20, positive_int, "adaptive sweeps: the most per temperature")
    num_integration_steps: int = option(
        5, positive_int, "leapfrog steps of hmc, OBABO steps of kinetic_langevin"
    )
    step_size: float | None = option(
        None, optional(positive), "initial step size in whitened coordinates (None: move's)"
    )
    target_acceptance_rate: float | None = option(
        None, optional(unit_interval), "acceptance rate the step size is tuned to (None: move's)"
    )
    adapt_step_size: bool = option(True, boolean, "retune the step size after each sweep")
    precondition: bool | str = option(
        True,
        _precondition_check,
        "whiten by the weighted particles' mean and covariance (True: the covariance where "
        "their correlations are badly conditioned, else the sd per coordinate, up to "
        f"{FULL_WHITENING_MAX_DIM} coordinates, the sd above; 'full': the covariance; "
        "'diagonal': the sd; False: not at all)",
    )
    schedule: str = option("adaptive", one_of(*SCHEDULES), "temperature schedule")
    target_conditional_ess: float = option(
        0.5, unit_interval, "adaptive schedule: conditional ESS per step, as a fraction of N"
    )
    num_steps: int = option(
        100, positive_int, "fixed schedules: number of steps; adaptive: the maximum"
    )
    pilot_particles: int = option(
        0, non_negative_int, "particles of a pilot run that fixes the tuning (0: no pilot)"
    )
    step_size_spread: float = option(
        0.0, _non_negative, "per-particle step size h exp(-spread U), U ~ U(0, 1)"
    )


@dataclasses.dataclass(frozen=True)
class _AnnealingConfig(AnnealingSettings):
    """Settings of smc and ais: annealing from a Gaussian reference."""

    reference_scale: float | None = option(
        None,
        optional(positive),
        "scale s of the reference N(0, s^2 I) (None: automatic, from a ray probe of the "
        "target's density and a pilot run, see run_annealing)",
    )
    reference_dof: float | None = option(
        None,
        optional(positive),
        "None: Gaussian references; nu: every reference (fixed, probed or fitted) a "
        "Student-t_nu of the same location and scale",
    )
    fit_reference_particles: int | None = option(
        None,
        optional(non_negative_int),
        "particles of a pilot run from that reference whose weighted mean and sd give the "
        "main runs' reference N(mean, diag sd^2) (0: off; None, when reference_scale is "
        "automatic: num_samples where the pilot can be the main run's first pass, the one "
        "compiled loop (smc, not waste-free), else 512, as two independent runs of 256; "
        "else 0)",
    )


@dataclasses.dataclass(frozen=True)
class SMCConfig(_AnnealingConfig):
    """Adaptive tempered SMC; ``num_chains`` runs of ``num_samples`` particles."""

    resampling: str = option("systematic", one_of(*RESAMPLING_SCHEMES), "resampling scheme")
    ess_threshold: float = option(0.5, _fraction, "resample when ESS < ess_threshold * N")
    waste_free_chains: int = option(
        0, non_negative_int, "waste-free SMC: M resampled chains (0: off); M divides N"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        m, n = self.waste_free_chains, self.num_samples
        if m and (n % m or n // m < 2):
            raise ValueError(
                f"waste_free_chains must divide num_samples={n} into chains of length >= 2, "
                f"got {m!r}"
            )


@dataclasses.dataclass(frozen=True)
class AISConfig(_AnnealingConfig):
    """Annealed importance sampling: no resampling, geometric schedule by default."""

    schedule: str = option("geometric", one_of(*SCHEDULES), "temperature schedule")


@dataclasses.dataclass(frozen=True)
class LangevinTransportSettings(AnnealingSettings):
    """Annealed unadjusted Langevin transport with exact weights and ESS-triggered
    resampling; ``num_mcmc_steps`` Langevin steps per temperature (smc_langevin and
    smc_flow)."""

    move: Any = option("ula", move_check(TRANSPORT_MOVES), "transport: name or Move")
    num_mcmc_steps: int | None = option(
        5,
        optional(positive_int),
        "Langevin steps per temperature (None: adaptive; fixed by default: every unadjusted "
        "step adds to the weights' variance, so moving until decorrelated is not the rule)",
    )
    target_acceptance_rate: float | None = option(
        0.9, optional(unit_interval), "would-be MALA acceptance the step size is tuned to"
    )
    pilot_particles: int = option(
        256, non_negative_int, "particles of a pilot run that fixes the tuning (0: no pilot)"
    )
    num_steps: int = option(200, positive_int, "fixed schedules: steps; adaptive: maximum")
    resampling: str = option("systematic", one_of(*RESAMPLING_SCHEMES), "resampling scheme")
    ess_threshold: float = option(0.5, _fraction, "resample when ESS < ess_threshold * N")


@dataclasses.dataclass(frozen=True)
class SMCLangevinConfig(LangevinTransportSettings):
    """smc_langevin: the transport from a Gaussian reference ``N(0, s^2 I)``."""

    reference_scale: float | None = option(
        None,
        optional(positive),
        "sd of the Gaussian reference N(0, s^2 I) (None: automatic, as smc's)",
    )
    fit_reference_particles: int | None = option(
        None,
        optional(non_negative_int),
        "particles of the pilot run that fits the reference (None: 512 when "
        "reference_scale is automatic, else 0)",
    )
