"""The one warmup of every Langevin sampler: burn-in, step size, diagonal mass matrix.

What is adapted is a :class:`WarmupPlan`:

- the step size: fixed (the warmup is burn-in), or, given a ``target_acceptance_rate``,
  adapted by blackjax's ``dual_averaging_adaptation`` (Hoffman and Gelman 2014, eq. 6,
  with their defaults t0=10, gamma=0.05, kappa=0.75) so that the mean of
  ``info.acceptance_rate`` reaches the target;
- with ``adapt_mass_matrix``, a diagonal inverse mass matrix, in two halves: the first
  half runs at the initial preconditioner and its second quarter (of the whole warmup)
  gives the estimate, blackjax's ``mass_matrix_adaptation`` (Welford's variance,
  regularised as in Stan's windowed adaptation: ``var * n/(n+5) + 1e-3 * 5/(n+5)``,
  Stan manual, "HMC algorithm parameters"); the second half runs with it (the step size
  continuing from the first half's).

The kernel runs on the whitened density of the current preconditioner (see
:mod:`bayeswb.samplers.langevin.preconditioning`); the warmup trace holds positions in
the target's coordinates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from blackjax.adaptation.mass_matrix import mass_matrix_adaptation
from blackjax.adaptation.step_size import dual_averaging_adaptation

from bayeswb.execution.driver import sample_chain
from bayeswb.samplers.langevin.preconditioning import rescale_state

Array = jax.Array
KernelStep = Callable[[Array, Any, Array], tuple[Any, Any]]
TraceFn = Callable[[Any, Any, Array], Any]
# (key, kernel_step, trace, state, step_size, num_steps) -> (state, step_size, trace)
Phase = Callable[[Array, KernelStep, TraceFn, Any, Array, int], tuple[Any, Array, Any]]

MIN_WARMUP_FOR_MASS_MATRIX = 100


class WarmupPlan(NamedTuple):
    """What a Langevin sampler's warmup starts from and adapts.

    num_steps:              warmup steps (each one kernel transition)
    step_size:              the initial step size (kept if not adapted)
    target_acceptance_rate: adapt the step size by dual averaging to this mean
                            acceptance rate (of the kernel's ``info.acceptance_rate``);
                            None: a fixed step (burn-in)
    inverse_mass_matrix:    the initial diagonal inverse mass matrix (None: identity)
    adapt_mass_matrix:      estimate a diagonal inverse mass matrix (two halves)
    """

    num_steps: int
    step_size: float
    target_acceptance_rate: float | None = None
    inverse_mass_matrix: tuple[float, ...] | None = None
    adapt_mass_matrix: bool = False


def check_mass_matrix_options(config: Any) -> None:
    """ValueError unless ``adapt_mass_matrix`` has no fixed ``inverse_mass_matrix`` beside
    it and at least ``MIN_WARMUP_FOR_MASS_MATRIX`` warmup steps."""
    if config.adapt_mass_matrix and config.inverse_mass_matrix is not None:
        raise ValueError(
            "adapt_mass_matrix must be False when inverse_mass_matrix is given, got True"
        )
    if config.adapt_mass_matrix and config.num_warmup < MIN_WARMUP_FOR_MASS_MATRIX:
        raise ValueError(
            f"num_warmup must be >= {MIN_WARMUP_FOR_MASS_MATRIX} when adapt_mass_matrix "
            f"is True, got {config.num_warmup!r}"
        )


def diagonal_inverse_mass_matrix(positions: Array) -> Array:
    """Stan's regularised diagonal variance of ``positions`` (n, dim) -> (dim,): blackjax's
    ``mass_matrix_adaptation`` (Welford) fed each row, then finalised; for n rows of
    variance v, ``v * n/(n+5) + 1e-3 * 5/(n+5)``.

    Example:
        >>> import jax.numpy as jnp
        >>> positions = jnp.array([[0.0, 0.0], [2.0, 0.0], [4.0, 0.0]])
        >>> [round(float(v), 6) for v in diagonal_inverse_mass_matrix(positions)]
        [1.500625, 0.000625]
    """
    mm_init, mm_update, mm_final = mass_matrix_adaptation(is_diagonal_matrix=True)
    mm_state, _ = jax.lax.scan(
        lambda state, x: (mm_update(state, x), None), mm_init(positions.shape[1]), positions
    )
    return mm_final(mm_state).inverse_mass_matrix


def burn_in(
    key: Array,
    kernel_step: KernelStep,
    trace: TraceFn,
    state: Any,
    step_size: Array,
    num_steps: int,
) -> tuple[Any, Array, Any]:
    """``num_steps`` steps at a fixed ``step_size``: (final state, step size, trace)."""
    state, steps = sample_chain(
        key,
        lambda k, s: kernel_step(k, s, step_size),
        state,
        num_steps,
        lambda s, info: trace(s, info, step_size),
    )
    return state, step_size, steps


def dual_averaging(target_acceptance_rate: float) -> Phase:
    """Like :func:`burn_in`, adapting the step size by blackjax's dual averaging
    towards ``target_acceptance_rate``; each step is traced with the step size it used,
    and the returned step size is the averaged one."""
    da_init, da_update, da_final = dual_averaging_adaptation(target_acceptance_rate)

    def run(
        key: Array,
        kernel_step: KernelStep,
        trace: TraceFn,
        state: Any,
        step_size: Array,
        num_steps: int,
    ) -> tuple[Any, Array, Any]:
        def step(key: Array, carry: tuple[Any, Any]) -> tuple[tuple[Any, Any], Any]:
            state, da_state = carry
            step_size = jnp.exp(da_state.log_step_size)
            state, info = kernel_step(key, state, step_size)
            # a divergent step has acceptance 0: it pushes the step size down, as it should
            acceptance_rate = jnp.nan_to_num(info.acceptance_rate)
            return (state, da_update(da_state, acceptance_rate)), (info, step_size)

        (state, da_state), steps = sample_chain(
            key,
            step,
            (state, da_init(step_size)),
            num_steps,
            lambda carry, used: trace(carry[0], used[0], used[1]),
        )
        return state, da_final(da_state), steps

    return run


def run_warmup(
    key: Array,
    at_scale: Callable[[Array | None], tuple[KernelStep, TraceFn]],
    state: Any,
    scale: Array | None,
    step_size: Array,
    plan: WarmupPlan,
) -> tuple[Any, Array | None, Array, Any]:
    """Run ``plan`` from ``state`` (whitened by ``scale``; None: identity).

    ``at_scale(scale) -> (kernel_step, trace)``: the kernel on the density whitened by
    ``scale``, ``kernel_step(key, state, step_size) -> (state, info)``, and what each step
    keeps, ``trace(state, info, step_size) -> (position, stats)`` with the position in
    the target's coordinates. Returns the final state, scale and step size, and the
    trace (None without warmup steps).
    """
    if plan.num_steps == 0:
        return state, scale, step_size, None
    phase: Phase
    if plan.target_acceptance_rate is None:
        phase = burn_in
    else:
        phase = dual_averaging(plan.target_acceptance_rate)
    if not plan.adapt_mass_matrix:
        state, step_size, trace = phase(key, *at_scale(scale), state, step_size, plan.num_steps)
        return state, scale, step_size, trace
    first_key, second_key = jax.random.split(key)
    first = plan.num_steps // 2
    state, step_size, first_trace = phase(first_key, *at_scale(scale), state, step_size, first)
    new_scale = jnp.sqrt(diagonal_inverse_mass_matrix(first_trace[0][first // 2 :]))
    state = rescale_state(state, scale, new_scale)
    state, step_size, second_trace = phase(
        second_key, *at_scale(new_scale), state, step_size, plan.num_steps - first
    )
    trace = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), first_trace, second_trace)
    return state, new_scale, step_size, trace
