"""``num_chains`` independent annealing runs of a target, assembled into Draws.

:func:`run_annealing` (smc, ais, smc_langevin and smc_flow) builds one :class:`Plan`
from the settings, and each run anneals from its reference: optionally a pilot run that
fits the reference to its particles (``fit_reference_particles``), optionally a pilot run
whose :class:`~.state.Tuning` the main run replays (``pilot_particles``), then the main
run. Cost counters are exact at any size (:class:`~bayeswb.core.draws.Count`): every
step's move inits and sweeps, and log gamma at every particle; the program counts only
each run's steps and each step's sweeps, the host multiplies them by the particles.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from bayeswb.core.draws import Count, Draws
from bayeswb.core.probe import probe_evaluations, probe_scale
from bayeswb.core.target import Target
from bayeswb.core.whitening import Whitening
from bayeswb.execution.driver import ChainLayout, run_chains
from bayeswb.samplers.smc.genealogy import relative_variance
from bayeswb.samplers.smc.kernel import Annealed, Parts, anneal
from bayeswb.samplers.smc.moves import MCMC_MOVES, Move, make_move
from bayeswb.samplers.smc.mutation import adaptive_sweeps, keep_all, keep_last, sweeps
from bayeswb.samplers.smc.references import (
    Reference,
    fitted_whitening,
    gaussian_reference,
    student_t_reference,
    whitened_reference,
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
    particle_whitening,
    replay_tuner,
)

Array = jax.Array
MakeReference = Callable[[Array], tuple[Reference, Any]]


# the automatic reference: particles of the pilot run that fits it, and the factor its sd
# is widened by (see run_annealing)
AUTO_FIT_PARTICLES = 512
REFERENCE_WIDENING = 2.0
# the reference-fitting pilot's path, in path_stats as reference_pilot_<name>
FIT_PATH_STATS = ("temperature", "num_sweeps", "ess")


class Plan(NamedTuple):
    """What every annealing run of one call shares.

    resampling:               a scheme of :data:`~.resampling.RESAMPLING_SCHEMES`; None: AIS
    step_size:                initial step size (the move's default if none is set, times
                              ``reference_scale`` for unwhitened particles)
    waste_free_chains:        M > 0: the main run is waste-free (its pilots are not)
    fit_reference_particles:  particles of the pilot run that fits the reference (0: none)
    reference_scale:          the fitted reference's fallback sd
    reference_dof:            the fitted reference is Student-t_dof (None: Gaussian)
    auto_reference:           the reference's scale is probed and the fit widened
    fit_move:                 the move of the reference-fitting pilot (an MCMC move)
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
    auto_reference: bool = False
    fit_move: Move | None = None
    reference_dof: float | None = None


class RunOutput(NamedTuple):
    """One run: the main run, the steps (``()``) and sweeps per step (``(num_steps,)``)
    its pilots took (for the cost), the reference's ``aux``."""

    main: Annealed
    pilot_steps: Array
    pilot_sweeps: Array
    fit_steps: Array
    fit_sweeps: Array
    fit_path: dict[str, Array]
    aux: Any


def annealing_plan(
    target: Target,
    config: AnnealingSettings,
    resampling: str | None,
    ess_threshold: float,
    reference_scale: float = 1.0,
    auto_reference: bool = False,
    waste_free_chains: int = 0,
    fit_reference_particles: int = 0,
    reference_dof: float | None = None,
) -> Plan:
    """The :class:`Plan` of ``config``'s runs: its move, the initial step size for a
    reference of sd ``reference_scale``, and for the reference-fitting pilot the move
    itself where it is an MCMC move, else MALA."""
    move = make_move(config.move, config.num_integration_steps)
    fit_move = move
    if not isinstance(config.move, Move) and config.move not in MCMC_MOVES:
        fit_move = make_move("mala")
    return Plan(
        target=target,
        config=config,
        move=move,
        resampling=resampling,
        ess_threshold=ess_threshold,
        step_size=initial_step_size(config, move, target.dim, reference_scale),
        waste_free_chains=waste_free_chains,
        fit_reference_particles=fit_reference_particles,
        reference_scale=reference_scale,
        auto_reference=auto_reference,
        fit_move=fit_move,
        reference_dof=reference_dof,
    )


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


def probed_reference(target: Target, dof: float | None = None) -> MakeReference:
    """Every run starts from ``N(0, s^2 I)`` (Student-t_dof(0, s^2 I) with ``dof``) with s
    from :func:`~bayeswb.core.probe.probe_scale` of the target's density (one probe per run, its
    evaluations counted)."""

    def make(run_key: Array) -> tuple[Reference, Any]:
        return whitened_reference(probed_whitening(target, run_key), dof), None

    return make


def probed_whitening(target: Target, key: Array) -> Whitening:
    """``(0, s)`` per coordinate, s from :func:`~bayeswb.core.probe.probe_scale`: the
    location and scale of :func:`probed_reference`."""
    scale = probe_scale(key, target.log_density, target.dim)
    return Whitening(jnp.zeros(target.dim, jnp.result_type(scale)), jnp.full(target.dim, scale))


def fit_reference(
    plan: Plan, positions: Array, log_weights: Array, halves: bool = False
) -> Whitening:
    """The location and scale of the reference fitted to a pilot's weighted particles:
    their mean and the whitening of the move's ``precondition`` option
    (:func:`~.tuning.particle_whitening`; the sds for ``precondition=False``), widened by
    ``REFERENCE_WIDENING`` for an automatic reference. By default, then, the reference
    has the particles' covariance where their correlations are badly conditioned, or
    for the two independent ``halves`` of a :func:`fit_pilot` where it predicts each
    half from the other (a reference with the target's correlations starts every
    particle, and every move's whitening, in the target's shape; an unadjusted
    transport, which hardly moves the particles, otherwise keeps the reference's shape),
    and their sds elsewhere."""
    precondition = plan.config.precondition or "diagonal"
    whiten = particle_whitening(plan.target.dim, precondition, halves)
    widen = REFERENCE_WIDENING if plan.auto_reference else 1.0
    return fitted_whitening(positions, log_weights, plan.reference_scale, widen, whiten)


def fit_pilot(plan: Plan, key: Array, reference: Reference, n: int) -> Annealed:
    """The reference-fitting pilot of ``n`` particles: two independent runs of
    ``ceil(n / 2)`` (:func:`fit_plan`), stacked on a leading axis of 2, so that the fit
    can tell the target's correlations from those the particles share with their
    ancestors (:func:`~.tuning.held_out_whitening`)."""
    keys = jax.random.split(key, 2)
    return jax.vmap(lambda k: anneal_run(fit_plan(plan), k, reference, -(-n // 2)))(keys)


def pooled(halves: Annealed) -> tuple[Array, Array]:
    """(positions (n, dim), normalised log weights (n,)) of :func:`fit_pilot`'s two runs,
    each of total weight 1/2."""
    dim = halves.positions.shape[-1]
    return halves.positions.reshape(-1, dim), (halves.log_weights - math.log(2)).reshape(-1)


def main_sweeps(plan: Plan) -> tuple[int, int]:
    """(sweeps per step, chains moved) of the main run: waste-free SMC runs M chains of
    ``N / M - 1`` steps; 0 sweeps means adaptive."""
    n, m = plan.config.num_samples, plan.waste_free_chains
    return (n // m - 1, m) if m else (plan.config.num_mcmc_steps or 0, n)


def make_mutate(plan: Plan, waste_free: bool, frozen: Tuning | None) -> Any:
    """The move's sweeps: waste-free chains, ``num_mcmc_steps`` fixed, or adaptive (the
    pilot's counts replayed if ``frozen``)."""
    config, move = plan.config, plan.move
    if waste_free:
        return sweeps(move, main_sweeps(plan)[0], config.step_size_spread)
    if config.num_mcmc_steps is not None:
        return sweeps(move, config.num_mcmc_steps, config.step_size_spread)
    replay = None if frozen is None else frozen.num_sweeps
    return adaptive_sweeps(move, config.max_mcmc_steps, config.step_size_spread, replay)


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
    return Parts(
        schedule=schedule,
        resample=resample,
        weigh=alive_weights if plan.resampling is None else normalised_weights,
        tune=tune,
        mutate=make_mutate(plan, waste_free, frozen),
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


def fit_plan(plan: Plan) -> Plan:
    """The plan of the reference-fitting pilot: adaptive tempered SMC (ESS-triggered
    resampling, adaptive temperatures) with an MCMC move, whatever the main run is (an
    AIS or unadjusted-transport main run still gets a resampled, exactly invariant
    pilot)."""
    if plan.resampling is not None and plan.fit_move is plan.move:
        return plan
    config = plan.config
    if plan.fit_move is not plan.move:
        # the main run's move settings belong to its transport, not to the MCMC move
        config = dataclasses.replace(config, target_acceptance_rate=None, step_size=None)
    config = dataclasses.replace(config, schedule="adaptive")
    move = plan.fit_move or plan.move
    step_size = initial_step_size(config, move, plan.target.dim, plan.reference_scale)
    return plan._replace(
        config=config,
        move=move,
        resampling=plan.resampling or "systematic",
        ess_threshold=plan.ess_threshold if plan.resampling else 0.5,
        step_size=step_size,
        waste_free_chains=0,
    )


def fit_in_main_loop(plan: Plan) -> bool:
    """Whether the reference-fitting pilot is the first pass of the main run's loop (one
    compiled anneal, not two): a probed reference, a pilot of ``num_samples`` particles
    run with the main run's own parts (adaptive tempered SMC with an MCMC move, not
    waste-free) and no tuning pilot in between."""
    return (
        plan.auto_reference
        and plan.fit_reference_particles == plan.config.num_samples
        and fit_plan(plan) is plan
        and not plan.waste_free_chains
        and not plan.config.pilot_particles
    )


def _fit_and_main_run(plan: Plan, reference_key: Array, fit_key: Array, main_key: Array) -> Any:
    """The probed reference's pilot and the main run from the reference fitted to it, as
    two passes of one ``lax.scan``: (pilot, main) :class:`~.kernel.Annealed`."""
    n = plan.config.num_samples

    def one_pass(whitening: Whitening, key: Array) -> tuple[Whitening, Annealed]:
        reference = whitened_reference(whitening, plan.reference_dof)
        run = anneal_run(plan, key, reference, n, main=True)
        fitted = fit_reference(plan, run.positions, run.log_weights)
        return jax.tree.map(lambda new, old: new.astype(old.dtype), fitted, whitening), run

    probed = probed_whitening(plan.target, reference_key)
    dtype = probed.mean.dtype
    particles = jax.ShapeDtypeStruct((n, plan.target.dim), dtype)
    weights = jax.ShapeDtypeStruct((n,), dtype)
    fit = functools.partial(fit_reference, plan)
    fitted_scale = jax.eval_shape(fit, particles, weights).scale
    if fitted_scale.ndim == 2:  # the carry's shape: the probed sds as a diagonal factor
        probed = probed._replace(scale=jnp.diag(probed.scale))
    _, runs = jax.lax.scan(one_pass, probed, jnp.stack([fit_key, main_key]))
    return jax.tree.map(lambda a: a[0], runs), jax.tree.map(lambda a: a[1], runs)


def one_run(plan: Plan, make_reference: MakeReference, run_key: Array) -> RunOutput:
    """A run from its reference: fit the reference (optional pilot), fix the tuning
    (optional pilot), then the main run of ``num_samples`` particles."""
    reference_key, pilot_key, main_key, fit_key = jax.random.split(run_key, 4)
    if fit_in_main_loop(plan):
        pilot, main = _fit_and_main_run(plan, reference_key, fit_key, main_key)
        fit_path = {f"reference_pilot_{name}": pilot.path[name] for name in FIT_PATH_STATS}
        return RunOutput(
            main,
            jnp.array(0),
            jnp.array(0),
            pilot.num_steps_taken,
            pilot.num_sweeps_taken,
            fit_path,
            None,
        )
    reference, aux = make_reference(reference_key)
    fit_steps = fit_sweeps = jnp.array(0)
    fit_path = {}
    if plan.fit_reference_particles:
        # a Gaussian (or Student-t) fitted to an independent pilot run, in two halves
        pilot = fit_pilot(plan, fit_key, reference, plan.fit_reference_particles)
        fitted = fit_reference(plan, *pooled(pilot), halves=True)
        reference = whitened_reference(fitted, plan.reference_dof)
        fit_steps = jnp.sum(pilot.num_steps_taken)
        fit_sweeps = jnp.sum(pilot.num_sweeps_taken, axis=0)
        fit_path = {  # (steps, 2): each half's path
            f"reference_pilot_{name}": pilot.path[name].T for name in FIT_PATH_STATS
        }
    frozen, pilot_steps, pilot_sweeps = None, jnp.array(0), jnp.array(0)
    if plan.config.pilot_particles:
        pilot = anneal_run(plan, pilot_key, reference, plan.config.pilot_particles)
        frozen = pilot.tuning
        pilot_steps, pilot_sweeps = pilot.num_steps_taken, pilot.num_sweeps_taken
    n = plan.config.num_samples
    main = anneal_run(plan, main_key, reference, n, main=True, frozen=frozen)
    return RunOutput(main, pilot_steps, pilot_sweeps, fit_steps, fit_sweeps, fit_path, aux)


def run_cost(
    move: Move, n: int, chains: int, steps: Array, step_sweeps: Array
) -> tuple[Count, Count]:
    """Exact (gradients, log-density evaluations) of runs that took ``steps`` steps and
    ``step_sweeps`` sweeps (integer arrays, summed whole: per run, per step): at each step
    ``chains`` moved chains' init and their sweeps, then log gamma at all n particles
    (the n initial draws not included). The products with ``n`` and ``chains`` are the
    host's (:class:`~bayeswb.core.draws.Count`).

    Example:
        >>> from bayeswb.samplers.smc.moves import mala_move
        >>> steps, sweeps = jnp.array(2), jnp.array([3, 4])
        >>> grads, evals = run_cost(mala_move(), 2**30, 2**30, steps, sweeps)
        >>> int(grads) == 2**30 * (2 + 7), int(evals) == 2**30 * (2 + 7) + 2**30 * 2
        (True, True)
    """
    grads = Count.of(steps, chains * move.grads_per_init)
    grads += Count.of(step_sweeps, chains * move.grads_per_step)
    evals = Count.of(steps, chains * move.evals_per_init + n)
    evals += Count.of(step_sweeps, chains * move.evals_per_step)
    return grads, evals


def cost_per_step(move: Move, n: int, num_sweeps: int, chains: int) -> tuple[int, int]:
    """Exact (gradients, log-density evaluations) of one step: ``chains`` moved chains'
    init and sweeps, then log gamma at all n particles."""
    grads = chains * (move.grads_per_init + num_sweeps * move.grads_per_step)
    evals = chains * (move.evals_per_init + num_sweeps * move.evals_per_step)
    return grads, evals + n


def assemble(plan: Plan, out: RunOutput) -> Draws:
    """Draws of the stacked runs, with the cost of every run's steps, sweeps and initial
    draws, and of the reference's probe.

    The counts stay per run (steps, at most ``num_steps``) and per step (sweeps, at most
    ``max_mcmc_steps``, ``num_mcmc_steps`` or ``N / M - 1``), so int32 holds each entry;
    the host multiplies by the particles and adds them up (:func:`run_cost`)."""
    config, main = plan.config, out.main
    moved = main_sweeps(plan)[1]
    pilot_n, fit_n = config.pilot_particles, plan.fit_reference_particles
    fit_move = fit_plan(plan).move if fit_n else plan.move
    # (move, steps, sweeps per step, particles, chains moved, populations) of each run;
    # a fitting pilot outside the main loop is two halves, their steps and sweeps summed
    fit_populations = 1 if fit_in_main_loop(plan) else 2
    fit_n = -(-fit_n // fit_populations)
    runs = (
        (plan.move, main.num_steps_taken, main.num_sweeps_taken, config.num_samples, moved, 1),
        (plan.move, out.pilot_steps, out.pilot_sweeps, pilot_n, pilot_n, 1),
        (fit_move, out.fit_steps, out.fit_sweeps, fit_n, fit_n, fit_populations),
    )
    grads, evals = Count(), Count()
    for move, steps, step_sweeps, n, chains, populations in runs:
        run_grads, run_evals = run_cost(move, n, chains, steps, step_sweeps)
        grads += run_grads
        evals += run_evals + config.num_chains * populations * n
    if plan.auto_reference:
        evals += config.num_chains * probe_evaluations()
    log_z_variance = None
    if not plan.waste_free_chains:  # waste-free particles are not drawn independently
        resamplings = jnp.sum(main.path["resampled"], axis=1)
        log_z_variance = jax.vmap(relative_variance)(main.log_weights, main.family, resamplings)
    return Draws(
        positions=main.positions,
        stats={"lp": main.lp, "family": main.family},
        log_weights=main.log_z[:, None] + main.log_weights,
        log_z=main.log_z,
        log_z_relative_variance=log_z_variance,
        path_stats={**main.path, **out.fit_path},
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
    reference_scale: float | None = 1.0,
    reference_dof: float | None = None,
    fit_reference_particles: int | None = 0,
    layout: ChainLayout | None = None,
) -> tuple[Draws, Any]:
    """``num_chains`` independent runs of :func:`~.kernel.anneal` (a pilot run first if
    ``config.pilot_particles``), assembled into Draws with exact cost counters.

    ``make_reference(run_key) -> (Reference, aux)`` builds each run's reference (for
    example by training a flow; its cost is the caller's to add); by default
    ``N(0, reference_scale^2 I)`` (Student-t with ``reference_dof``). With
    ``fit_reference_particles = m``, each run first anneals m particles from that
    reference (adaptive tempered SMC with an MCMC move, as two independent runs of m / 2,
    :func:`fit_pilot`) and then uses ``N(mean, diag sd^2)`` of their weighted positions,
    or their covariance where each half's predicts the other better
    (:func:`fit_reference`); the pilot is independent of the run's own particles and its
    cost is counted. ``reference_dof`` makes every one of these references (fixed,
    probed, fitted) a Student-t of that location and scale.

    ``reference_scale=None`` (the default of smc, ais and smc_langevin) makes the
    reference automatic, from nothing but the target's density: the pilot (of
    ``fit_reference_particles``; None: ``num_samples`` where the pilot can be the first
    pass of the main run's loop, :func:`fit_in_main_loop`, so that the anneal compiles
    once (on gmm25, 1000 particles: 12 s instead of 17-20 s), else 512) anneals from
    ``N(0, s^2 I)`` with s from a ray probe of the density
    (:func:`~bayeswb.core.probe.probe_scale`, wider than the target's reach from the
    origin), and the main run from ``N(mean, diag (2 sd)^2)`` of the
    pilot's weighted particles (``N(mean, 4 Sigma)``, their covariance, where their
    correlations are badly conditioned, or for a pilot in two halves where each half's
    covariance predicts the other). The factor 2: the pilot's sd under-estimates the
    target's spread when it misses outlying modes or when its few particles are
    under-dispersed, and a Gaussian reference narrower than the target confines the
    tempered path and starves the tails (the importance weights of ``N(0, k^2)`` for
    ``N(0, 1)`` have infinite variance for ``k <= 1/sqrt 2``), while a wider one costs
    only about ``dim log k / 2`` nats more of tempering, which the adaptive schedule
    pays with a few more temperatures. Returns the Draws and the runs' stacked ``aux``.
    """
    auto = reference_scale is None and make_reference is None
    fit_size_chosen = fit_reference_particles is not None
    if fit_reference_particles is None:
        fit_reference_particles = AUTO_FIT_PARTICLES if auto else 0
    scale = 1.0 if reference_scale is None else reference_scale
    if make_reference is None:
        if auto:
            make_reference = probed_reference(target, reference_dof)
        else:
            make_reference = fixed_reference(target.dim, scale, reference_dof)
    plan = annealing_plan(
        target, config, resampling, ess_threshold, scale, auto, waste_free_chains,
        fit_reference_particles, reference_dof,
    )  # fmt: skip
    in_main_loop = plan._replace(fit_reference_particles=config.num_samples)
    if auto and not fit_size_chosen and fit_in_main_loop(in_main_loop):
        # a pilot as large as the main run, so that both are one compiled loop: on a
        # small run compiling the second loop cost more than the pilot's particles
        plan = in_main_loop
    run = functools.partial(one_run, plan, make_reference)
    out = run_chains(key, config.num_chains, run, layout)
    return assemble(plan, out), out.aux
