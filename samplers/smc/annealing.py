"""``num_chains`` independent annealing runs of a target, assembled into Draws.

:func:`run_annealing` (smc, ais, smc_langevin and smc_flow) builds one :class:`Plan`
from the settings, and each run anneals from its reference: optionally a pilot run that
fits a moment-matched reference (``fit_reference_particles``), optionally a pilot run
whose :class:`~.state.Tuning` the main run replays (``pilot_particles``), then the main
run. Cost counters are exact: every step's move inits and sweeps, and log gamma at every
particle.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from bayeswb.core.draws import Draws
from bayeswb.core.target import Target
from bayeswb.execution.driver import ChainLayout, run_chains
from bayeswb.samplers.smc.kernel import Annealed, Parts, anneal
from bayeswb.samplers.smc.moves import Move, make_move
from bayeswb.samplers.smc.mutation import keep_all, keep_last, sweeps
from bayeswb.samplers.smc.references import (
    Reference,
    gaussian_reference,
    moment_matched_reference,
    student_t_reference,
)
from bayeswb.samplers.smc.resampling import (
    ess_resampling,
    no_resampling,
    waste_free_resampling,
)
from bayeswb.samplers.smc.settings import AnnealingSettings
from bayeswb.samplers.smc.state import Tuning
from bayeswb.samplers.smc.tempering import ladder_schedule, make_schedule
from bayeswb.samplers.smc.tuning import (
    adaptive_tuner,
    alive_weights,
    normalised_weights,
    replay_tuner,
)

Array = jax.Array
MakeReference = Callable[[Array], tuple[Reference, Any]]


class Plan(NamedTuple):
    """What every annealing run of one call shares.

    resampling:               a scheme of :data:`~.resampling.RESAMPLING_SCHEMES`; None: AIS
    step_size:                initial step size (the move's default if none is set, times
                              ``reference_scale`` for unwhitened particles)
    waste_free_chains:        M > 0: the main run is waste-free (its pilots are not)
    fit_reference_particles:  particles of the pilot run that fits the reference (0: none)
    reference_scale:          the fitted reference's fallback sd
    """

    target: Target
    config: AnnealingSettings
    move: Move
    resampling: str | None
    ess_threshold: float
    step_size: float
    waste_free_chains: int
    fit_reference_particles: int
    reference_scale: float


class RunOutput(NamedTuple):
    """One run: the main run, the steps its pilots took (for the cost), the reference's
    ``aux``."""

    main: Annealed
    pilot_steps: Array
    fit_steps: Array
    aux: Any


def initial_step_size(config: AnnealingSettings, move: Move, dim: int, scale: float) -> float:
    """``config.step_size`` or the move's default; for unwhitened particles (no
    ``precondition``) times the reference's scale ``scale``, where they start."""
    step_size = move.default_step_size(dim) if config.step_size is None else config.step_size
    return step_size if config.precondition else step_size * scale


def fixed_reference(dim: int, scale: float, dof: float | None) -> MakeReference:
    """Every run starts from ``N(0, scale^2 I)``, or Student-t_dof(0, scale^2 I)."""
    if dof is None:
        reference = gaussian_reference(dim, scale)
    else:
        reference = student_t_reference(dim, scale, dof)
    return lambda run_key: (reference, None)


def main_sweeps(plan: Plan) -> tuple[int, int]:
    """(sweeps per step, chains moved) of the main run: waste-free SMC runs M chains of
    ``N / M - 1`` steps."""
    n, m = plan.config.num_samples, plan.waste_free_chains
    return (n // m - 1, m) if m else (plan.config.num_mcmc_steps, n)


def annealing_parts(plan: Plan, main: bool = False, frozen: Tuning | None = None) -> Parts:
    """The :class:`~.kernel.Parts` of the ``main`` run (waste-free if the plan is) or of a
    pilot run (never waste-free); replaying ``frozen`` (a pilot's tuning) if given."""
    config, move = plan.config, plan.move
    waste_free = main and plan.waste_free_chains > 0
    if frozen is None:
        schedule = make_schedule(config.schedule, config.num_steps, config.target_conditional_ess)
        target_acceptance = config.target_acceptance_rate
        if target_acceptance is None:
            target_acceptance = move.target_acceptance_rate
        precondition, adapt = config.precondition, config.adapt_step_size
        tune = adaptive_tuner(plan.target.dim, precondition, adapt, target_acceptance)
    else:
        schedule, tune = ladder_schedule(frozen.temperature), replay_tuner(frozen)
    if waste_free and plan.resampling is not None:
        resample = waste_free_resampling(plan.resampling, plan.waste_free_chains)
    elif plan.resampling is None:
        resample = no_resampling
    else:
        resample = ess_resampling(plan.resampling, plan.ess_threshold)
    num_sweeps = main_sweeps(plan)[0] if waste_free else config.num_mcmc_steps
    return Parts(
        schedule=schedule,
        resample=resample,
        weigh=alive_weights if plan.resampling is None else normalised_weights,
        tune=tune,
        mutate=sweeps(move, num_sweeps, config.step_size_spread),
        keep=keep_all if waste_free else keep_last,
    )


def anneal_run(
    plan: Plan,
    key: Array,
    reference: Reference,
    num_particles: int,
    main: bool = False,
    frozen: Tuning | None = None,
) -> Annealed:
    """:func:`~.kernel.anneal` with the :func:`annealing_parts` of the plan."""
    parts = annealing_parts(plan, main, frozen)
    log_density, num_steps = plan.target.log_density, plan.config.num_steps
    return anneal(
        key,
        log_density,
        reference,
        num_particles,
        parts,
        num_steps=num_steps,
        step_size=plan.step_size,
    )


def one_run(plan: Plan, make_reference: MakeReference, run_key: Array) -> RunOutput:
    """A run from its reference: fit the reference (optional pilot), fix the tuning
    (optional pilot), then the main run of ``num_samples`` particles."""
    reference_key, pilot_key, main_key, fit_key = jax.random.split(run_key, 4)
    reference, aux = make_reference(reference_key)
    fit_steps = jnp.array(0)
    if plan.fit_reference_particles:
        # a diagonal Gaussian moment-matched to an independent pilot run
        pilot = anneal_run(plan, fit_key, reference, plan.fit_reference_particles)
        reference = moment_matched_reference(
            pilot.positions, pilot.log_weights, plan.reference_scale
        )
        fit_steps = pilot.num_steps_taken
    frozen, pilot_steps = None, jnp.array(0)
    if plan.config.pilot_particles:
        pilot = anneal_run(plan, pilot_key, reference, plan.config.pilot_particles)
        frozen, pilot_steps = pilot.tuning, pilot.num_steps_taken
    n = plan.config.num_samples
    main = anneal_run(plan, main_key, reference, n, main=True, frozen=frozen)
    return RunOutput(main, pilot_steps, fit_steps, aux)


def cost_per_step(move: Move, n: int, num_sweeps: int, chains: int) -> tuple[int, int]:
    """Exact (gradients, log-density evaluations) of one step: ``chains`` moved chains'
    init and sweeps, then log gamma at all n particles."""
    grads = chains * (move.grads_per_init + num_sweeps * move.grads_per_step)
    evals = chains * (move.evals_per_init + num_sweeps * move.evals_per_step)
    return grads, evals + n


def assemble(plan: Plan, out: RunOutput) -> Draws:
    """Draws of the stacked runs, with the cost of every run's steps and initial draws."""
    config, main = plan.config, out.main
    num_sweeps, moved = main_sweeps(plan)
    pilot_n, fit_n = config.pilot_particles, plan.fit_reference_particles
    runs = (
        (main.num_steps_taken, config.num_samples, num_sweeps, moved),
        (out.pilot_steps, pilot_n, config.num_mcmc_steps, pilot_n),
        (out.fit_steps, fit_n, config.num_mcmc_steps, fit_n),
    )
    grads: Array | int = 0
    evals: Array | int = 0
    for steps, n, sweeps_per_step, chains in runs:
        step_grads, step_evals = cost_per_step(plan.move, n, sweeps_per_step, chains)
        grads = grads + jnp.sum(steps) * step_grads
        evals = evals + config.num_chains * n + jnp.sum(steps) * step_evals
    return Draws(
        positions=main.positions,
        stats={"lp": main.lp},
        log_weights=main.log_z[:, None] + main.log_weights,
        log_z=main.log_z,
        path_stats=main.path,
        n_grad_evals=grads,
        n_logdensity_evals=evals,
    )


def run_annealing(
    key: Array,
    target: Target,
    config: AnnealingSettings,
    resampling: str | None,
    ess_threshold: float,
    waste_free_chains: int = 0,
    make_reference: MakeReference | None = None,
    reference_scale: float = 1.0,
    reference_dof: float | None = None,
    fit_reference_particles: int = 0,
    layout: ChainLayout | None = None,
) -> tuple[Draws, Any]:
    """``num_chains`` independent runs of :func:`~.kernel.anneal` (a pilot run first if
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
        make_reference = fixed_reference(target.dim, reference_scale, reference_dof)
    plan = Plan(
        target=target,
        config=config,
        move=move,
        resampling=resampling,
        ess_threshold=ess_threshold,
        step_size=initial_step_size(config, move, target.dim, reference_scale),
        waste_free_chains=waste_free_chains,
        fit_reference_particles=fit_reference_particles,
        reference_scale=reference_scale,
    )
    run = functools.partial(one_run, plan, make_reference)
    out = run_chains(key, config.num_chains, run, layout)
    return assemble(plan, out), out.aux
