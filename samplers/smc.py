"""Sequential Monte Carlo with log Z: adaptive tempered SMC, AIS and annealed-Langevin SMC.

All three anneal from a Gaussian reference ``q = N(0, reference_scale^2 I)`` (smc and ais
optionally from a multivariate Student-t, ``reference_dof``, whose polynomial tails temper
a target's far tails much less, or from a diagonal Gaussian moment-matched to an
independent pilot run, ``fit_reference_particles``; smc_flow, in :mod:`.smc_flow`, from a
trained flow: any :class:`~.smc_core.Reference` works) to the target ``gamma``
(unnormalised) along the geometric path

    pi_beta(x)  proportional to  q(x)^(1 - beta) gamma(x)^beta,   0 = beta_0 < ... < beta_T = 1,

and estimate ``Z = int gamma`` (``q`` is normalised, so ``Z_0 = 1``). They share one loop
(:func:`~bayeswb.samplers.smc_core.anneal`, driven by :func:`run_annealing`), run per
independent run in a
``lax.while_loop`` and vmapped over ``num_chains`` runs of ``num_samples`` particles.
One step ``t -> t + 1``:

1. next temperature: fixed schedule, or the largest ``beta`` whose conditional ESS
   ``N (sum_i W_i w_i)^2 / sum_i W_i w_i^2`` (Zhou, Johansen and Aston 2016, section 3)
   of the incremental weights ``w_i`` equals
   ``target_conditional_ess * N``, by blackjax's bisection (``smc.solver.dichotomy``);
2. reweight: ``log w_i += (beta_{t+1} - beta_t) (log gamma(x_i) - log q(x_i))``,
   ``log Z += log sum_i W_i exp(...)`` (W normalised weights);
3. resample (blackjax's schemes) only if the ESS falls below ``ess_threshold * N``;
4. move every particle with a kernel for ``pi_{beta_{t+1}}`` (:mod:`.smc_moves`), run
   in coordinates whitened by the weighted particle mean and sd, with the step size
   retuned from the population's acceptance rate after every sweep; optionally each
   particle's step size is drawn from ``h exp(-s U)`` (``step_size_spread = s``), a
   mixture of invariant kernels that covers regions of very different scales (a
   funnel's neck and mouth: ``move="hmc", step_size_spread=4.6,
   target_conditional_ess=0.9`` passes the funnel test, where MALA with one step misses
   the neck); ``move="local_hmc"`` instead scales each transition's step by the local
   gradient norm (exact by a GIST correction, :func:`.smc_moves.local_hmc_move`), which
   with ``precondition=False`` and a Student-t reference is what fills the dim-10 funnel's
   neck and mouth in the Sendera et al. benchmark.

Exactness: with a fixed schedule, ``precondition=False`` and ``adapt_step_size=False``
each run's ``Z`` estimate is unbiased. Adapting temperatures, whitening and step size
from the run's own particles makes it consistent with an O(1/N) bias (measured: +5% in Z
at N = 128, +1.3% at N = 512, on a 10-d Gaussian with 10 steps), large for the
unadjusted transport, whose weights depend on the tuning. ``pilot_particles = n > 0``
removes it: an independent pilot run of n particles adapts, and the main run replays its
temperatures, whitening and step sizes (Tuning) without adapting anything.

Log weights stay in log space; a NaN log density is mapped to -inf (weight zero), and a
run whose particles all die has ``log_z = -inf``, never NaN.

Output (``Draws``): positions (runs, particles, dim) at beta = 1; ``log_weights`` =
``log Z_r + log W_{r,i}`` (unnormalised: pooled over runs they weight each run by its
evidence, as raw importance weights do); ``log_z`` (runs,); ``stats["lp"]`` = log gamma.
``path_stats`` (runs, num_steps), entry t describing step t (padding value after a run's
last step: NaN for floats, False for ``resampled``):

- ``temperature``: beta after the step; ``log_z_increment``: its log Z increment
- ``ess``: ESS of the weights after reweighting, before resampling
- ``resampled``: whether the step resampled
- ``acceptance_rate``: weighted mean acceptance of the move, averaged over its sweeps
  (for an unadjusted transport: the Metropolis-Hastings probability it would have had)
- ``step_size``: the step size (in whitened coordinates) at the end of the step

``num_warmup`` is unused by the SMC family.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from bayeswb.core.config import (
    SamplerConfig,
    boolean,
    non_negative_int,
    one_of,
    option,
    positive,
    positive_int,
    unit_interval,
)
from bayeswb.core.draws import Draws
from bayeswb.core.target import Target
from bayeswb.execution.driver import ChainLayout, run_chains
from bayeswb.samplers import register
from bayeswb.samplers.smc_core import (
    RESAMPLING_SCHEMES,
    SCHEDULES,
    Annealed,
    Reference,
    anneal,
    diagonal_gaussian_reference,
    gaussian_reference,
    student_t_reference,
)
from bayeswb.samplers.smc_moves import MCMC_MOVES, TRANSPORT_MOVES, Move, make_move

Array = jax.Array


# --------------------------------------------------------------------------- configs


def _optional(check: Any) -> Any:
    return lambda value: None if value is None else check(value)


def _non_negative(value: Any) -> str | None:
    """>= 0."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
    return None if ok else "must be a number >= 0"


def _fraction(value: Any) -> str | None:
    """In (0, 1]."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 1
    return None if ok else "must be a number in (0, 1]"


def _move_check(names: tuple[str, ...]) -> Any:
    def check(value: Any) -> str | None:
        if isinstance(value, Move) or value in names:
            return None
        return f"must be one of {', '.join(map(repr, names))} or a smc_moves.Move"

    return check


@dataclasses.dataclass(frozen=True)
class AnnealingSettings(SamplerConfig):
    """Settings of the annealing loop shared by smc, ais, smc_langevin and smc_flow."""

    num_warmup: int = option(0, non_negative_int, "unused by the SMC family")
    move: Any = option("mala", _move_check(MCMC_MOVES), "MCMC kernel: name or smc_moves.Move")
    num_mcmc_steps: int = option(5, positive_int, "move sweeps per temperature")
    num_integration_steps: int = option(
        5, positive_int, "leapfrog steps of hmc, OBABO steps of kinetic_langevin"
    )
    step_size: float | None = option(
        None, _optional(positive), "initial step size in whitened coordinates (None: move's)"
    )
    target_acceptance_rate: float | None = option(
        None, _optional(unit_interval), "acceptance rate the step size is tuned to (None: move's)"
    )
    adapt_step_size: bool = option(True, boolean, "retune the step size after each sweep")
    precondition: bool = option(True, boolean, "whiten by the weighted particle mean and sd")
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

    reference_scale: float = option(1.0, positive, "scale s of the reference (N(0, s^2 I))")
    reference_dof: float | None = option(
        None, _optional(positive), "None: Gaussian reference; nu: Student-t_nu(0, s^2 I)"
    )
    fit_reference_particles: int = option(
        0,
        non_negative_int,
        "particles of a pilot run from that reference whose weighted mean and sd give the "
        "main runs' reference N(mean, diag sd^2) (0: off)",
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

    move: Any = option("ula", _move_check(TRANSPORT_MOVES), "transport: name or Move")
    target_acceptance_rate: float | None = option(
        0.9, _optional(unit_interval), "would-be MALA acceptance the step size is tuned to"
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

    reference_scale: float = option(1.0, positive, "sd of the Gaussian reference N(0, s^2 I)")


def _cost_per_step(move: Move, n: int, num_sweeps: int, chains: int) -> tuple[int, int]:
    """Exact (gradients, log-density evaluations) of one step: ``chains`` moved chains'
    init and sweeps, then log gamma at all n particles."""
    grads = chains * (move.grads_per_init + num_sweeps * move.grads_per_step)
    evals = chains * (move.evals_per_init + num_sweeps * move.evals_per_step)
    return grads, evals + n


def run_annealing(
    key: Array,
    target: Target,
    config: AnnealingSettings,
    resampling: str | None,
    ess_threshold: float,
    waste_free_chains: int = 0,
    make_reference: Callable[[Array], tuple[Reference, Any]] | None = None,
    reference_scale: float = 1.0,
    reference_dof: float | None = None,
    fit_reference_particles: int = 0,
    layout: ChainLayout | None = None,
) -> tuple[Draws, Any]:
    """``num_chains`` independent runs of :func:`~.smc_core.anneal` (a pilot run first if
    ``config.pilot_particles``), assembled into Draws with exact cost counters.

    ``make_reference(run_key) -> (Reference, aux)`` builds each run's reference (for
    example by training a flow; its cost is the caller's to add); by default
    ``N(0, reference_scale^2 I)`` (Student-t with ``reference_dof``). With
    ``fit_reference_particles = m``, each run first anneals m particles from that
    reference and then uses ``N(mean, diag sd^2)`` of their weighted positions; the pilot
    is independent of the run's own particles and its cost is counted.
    Returns the Draws and the runs' stacked ``aux``.
    """
    move = make_move(config.move, config.num_integration_steps)
    if make_reference is None:
        if reference_dof is None:
            fixed = gaussian_reference(target.dim, reference_scale)
        else:
            fixed = student_t_reference(target.dim, reference_scale, reference_dof)
        make_reference = lambda run_key: (fixed, None)  # noqa: E731
    step_size = config.step_size
    if not config.precondition:
        # unwhitened particles start at the reference's scale
        default = move.default_step_size(target.dim) if step_size is None else step_size
        step_size = default * reference_scale
    n = config.num_samples
    pilot_n = config.pilot_particles
    fit_n = fit_reference_particles
    settings = {
        "schedule": config.schedule,
        "num_steps": config.num_steps,
        "target_conditional_ess": config.target_conditional_ess,
        "resampling": resampling,
        "ess_threshold": ess_threshold,
        "step_size": step_size,
        "target_acceptance_rate": config.target_acceptance_rate,
        "adapt_step_size": config.adapt_step_size,
        "precondition": config.precondition,
        "step_size_spread": config.step_size_spread,
    }
    if waste_free_chains:
        num_sweeps, moved = n // waste_free_chains - 1, waste_free_chains
    else:
        num_sweeps, moved = config.num_mcmc_steps, n

    def fit(key: Array, reference: Reference) -> tuple[Reference, Array]:
        """A diagonal Gaussian moment-matched to an independent pilot run."""
        pilot = anneal(
            key,
            target.log_density,
            reference,
            target.dim,
            fit_n,
            move,
            num_sweeps=config.num_mcmc_steps,
            waste_free_chains=0,
            **settings,
        )
        w = jnp.exp(pilot.log_weights)
        mean = w @ pilot.positions
        sd = jnp.sqrt(w @ (pilot.positions - mean) ** 2)
        ok = jnp.all(jnp.isfinite(mean)) & jnp.all(jnp.isfinite(sd) & (sd > 0))
        mean = jnp.where(ok, mean, 0.0)
        sd = jnp.where(ok, sd, reference_scale)
        return diagonal_gaussian_reference(mean, sd), pilot.num_steps_taken

    def one_run(run_key: Array) -> tuple[Annealed, Array, Array, Any]:
        reference_key, pilot_key, main_key, fit_key = jax.random.split(run_key, 4)
        reference, aux = make_reference(reference_key)
        fit_steps = jnp.array(0)
        if fit_n:
            reference, fit_steps = fit(fit_key, reference)
        frozen, pilot_steps = None, jnp.array(0)
        if pilot_n:
            pilot = anneal(
                pilot_key,
                target.log_density,
                reference,
                target.dim,
                pilot_n,
                move,
                num_sweeps=config.num_mcmc_steps,
                waste_free_chains=0,
                **settings,
            )
            frozen, pilot_steps = pilot.tuning, pilot.num_steps_taken
        main = anneal(
            main_key,
            target.log_density,
            reference,
            target.dim,
            n,
            move,
            num_sweeps=num_sweeps,
            waste_free_chains=waste_free_chains,
            frozen=frozen,
            **settings,
        )
        return main, pilot_steps, fit_steps, aux

    out, pilot_steps, fit_steps, aux = run_chains(key, config.num_chains, one_run, layout)
    grads, evals = _cost_per_step(move, n, num_sweeps, moved)
    pilot_grads, pilot_evals = _cost_per_step(move, pilot_n, config.num_mcmc_steps, pilot_n)
    fit_grads, fit_evals = _cost_per_step(move, fit_n, config.num_mcmc_steps, fit_n)
    main_steps, pilot_steps = jnp.sum(out.num_steps_taken), jnp.sum(pilot_steps)
    fit_steps = jnp.sum(fit_steps)
    return Draws(
        positions=out.positions,
        stats={"lp": out.lp},
        log_weights=out.log_z[:, None] + out.log_weights,
        log_z=out.log_z,
        path_stats=out.path,
        n_grad_evals=main_steps * grads + pilot_steps * pilot_grads + fit_steps * fit_grads,
        n_logdensity_evals=config.num_chains * (n + pilot_n + fit_n)
        + main_steps * evals
        + pilot_steps * pilot_evals
        + fit_steps * fit_evals,
    ), aux


# --------------------------------------------------------------------------- samplers


@register("smc", SMCConfig, family="smc")
def run_smc(
    key: Array, target: Target, config: SMCConfig, layout: ChainLayout | None = None
) -> Draws:
    """Adaptive tempered SMC sampler (Del Moral, Doucet and Jasra 2006, Section 3.3.2.3:
    MCMC moves with the time-reversal backward kernel, incremental weight
    ``gamma_n(x_{n-1}) / gamma_{n-1}(x_{n-1})``; their eq. 14 gives the log Z estimate as
    the product of the mean incremental weights).

    Temperatures by bisection on the conditional ESS (Zhou, Johansen and Aston 2016);
    resampling only when the ESS falls below ``ess_threshold * N`` (systematic,
    stratified, multinomial or residual, from blackjax); moves (``mala``, ``hmc``,
    ``local_hmc``, ``rwm``, ``kinetic_langevin`` or any
    :class:`~bayeswb.samplers.smc_moves.Move`) on whitened particles with
    the step size retuned after each sweep, ``log h += acceptance - target``. With
    ``waste_free_chains = M``, the waste-free variant of Dau and Chopin (2022, Algorithm
    2): resample M particles, run each as a chain of ``N / M - 1`` steps and keep all
    states. See the module docstring for outputs and ``path_stats``.

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample(bw.models.get("gaussian", dim=2), "smc", num_chains=2,
        ...               num_samples=200)
        >>> r.log_z is not None, "temperature" in r.idata.path_stats
        (True, True)
    """
    draws, _ = run_annealing(
        key,
        target,
        config,
        config.resampling,
        config.ess_threshold,
        config.waste_free_chains,
        reference_scale=config.reference_scale,
        reference_dof=config.reference_dof,
        fit_reference_particles=config.fit_reference_particles,
        layout=layout,
    )
    return draws


@register("ais", AISConfig, family="smc")
def run_ais(
    key: Array, target: Target, config: AISConfig, layout: ChainLayout | None = None
) -> Draws:
    """Annealed importance sampling (Neal 2001, section 2): each particle is moved by
    kernels ``T_j`` leaving ``pi_{beta_j}`` invariant and weighted by
    ``prod_j gamma_{beta_j}(x_{j-1}) / gamma_{beta_{j-1}}(x_{j-1})``; no resampling.
    Same moves and schedules as :func:`run_smc` (the whitening and step size are
    computed from the weighted population). ``log Z`` of a run is the log mean of its
    particles' weights.

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample(bw.models.get("gaussian", dim=2), "ais", num_chains=2,
        ...               num_samples=100, num_steps=20)
        >>> bool(r.idata.path_stats["resampled"].any())
        False
    """
    draws, _ = run_annealing(
        key,
        target,
        config,
        None,
        0.0,
        reference_scale=config.reference_scale,
        reference_dof=config.reference_dof,
        fit_reference_particles=config.fit_reference_particles,
        layout=layout,
    )
    return draws


@register("smc_langevin", SMCLangevinConfig, family="smc")
def run_smc_langevin(
    key: Array, target: Target, config: SMCLangevinConfig, layout: ChainLayout | None = None
) -> Draws:
    """Annealed-Langevin SMC: the continuous-time SMC of Sequential Boltzmann Generators
    (Tan, Bose, Lin, Klein, Bronstein and Tong 2025, without the flow) made exact in
    discrete time.

    Particles are transported by ``num_mcmc_steps`` unadjusted Langevin steps per
    temperature (never rejected), and weighted by the tempering factor times each step's
    ``pi(y) K(x | y) / (pi(x) K(y | x))`` (:func:`~bayeswb.samplers.smc_moves.ula_transport`),
    i.e. the work of Jarzynski (1997: ``<exp(-W)> = exp(-Delta F)``) plus the
    Euler discretisation correction, so log Z is unbiased on the natural scale for every
    step size. Resampling is triggered by the ESS. The step size is retuned so the
    would-be MALA acceptance (which controls the weights' variance) meets the target.

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample(bw.models.get("gaussian", dim=2), "smc_langevin", num_chains=2,
        ...               num_samples=200)
        >>> r.idata.path_stats["ess"].dims
        ('chain', 'step')
    """
    draws, _ = run_annealing(
        key,
        target,
        config,
        config.resampling,
        config.ess_threshold,
        reference_scale=config.reference_scale,
        layout=layout,
    )
    return draws
