"""The one warmup of every Langevin sampler: burn-in, step size, diagonal mass matrix.

What is adapted is a :class:`WarmupPlan`, one step at a time (:class:`WarmupAdaptation`):
in a ``lax.scan`` of its own (:func:`run_warmup`), or as the first steps of the draws'
loop (ula, mala and the kinetic samplers, so that their kernel compiles once):

- the step size: fixed (the warmup is burn-in), or, given a ``target_acceptance_rate``,
  adapted by blackjax's ``dual_averaging_adaptation`` (Hoffman and Gelman 2014, eq. 6,
  with their defaults t0=10, gamma=0.05, kappa=0.75) so that the mean of
  the plan's ``statistic(info)`` reaches the target. For a Metropolis-adjusted kernel
  the statistic is its acceptance probability. An unadjusted kernel has none; it reports
  the energy error ``E`` of its step (``info.energy_error``: minus the log Metropolis
  ratio the step would have had, or the shadow work of a splitting, see
  :mod:`bayeswb.samplers.langevin.overdamped` and
  :mod:`bayeswb.samplers.langevin.kinetic`), and the step is tuned to the rule of Robnik
  et al. (2023, "Microcanonical Hamiltonian Monte Carlo", JMLR 24, step-size tuning: choose
  the step so that ``Var[E] / d`` equals a desired value; their default 5e-4) through
  the bounded statistic of :func:`energy_variance_statistic`;
- with ``adapt_mass_matrix``, a diagonal inverse mass matrix by Stan's windowed scheme
  (Stan Reference Manual, "HMC algorithm parameters", automatic parameter tuning):
  blackjax's ``build_schedule`` gives a fast window (step size only; 75 steps), slow
  windows doubling in size (25, 50, 100, ...; the step size still adapted) and a final
  fast window (50 steps), all shrunk to 15% / 75% / 10% when the warmup is shorter than
  150 steps. Within a slow window blackjax's ``mass_matrix_adaptation`` accumulates
  Welford's variance of the positions; at its end the inverse mass matrix becomes that
  variance regularised as in Stan, ``var * n/(n+5) + 1e-3 * 5/(n+5)``, the chain moves
  to the new whitening, and dual averaging restarts from the current averaged step (as
  blackjax's ``window_adaptation``).

The kernel runs on the whitened density of the current preconditioner (see
:mod:`bayeswb.samplers.langevin.preconditioning`); the warmup trace holds positions in
the target's coordinates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.adaptation.mass_matrix import mass_matrix_adaptation
from blackjax.adaptation.step_size import dual_averaging_adaptation
from blackjax.adaptation.window_adaptation import build_schedule

from bayeswb.core.config import SamplerConfig, option
from bayeswb.samplers.langevin.preconditioning import positive_tuple_or_none, rescale_state

Array = jax.Array
KernelStep = Callable[..., tuple[Any, Any]]  # (key, state, step_size, **kwargs)
TraceFn = Callable[[Any, Any, Array], Any]

MIN_WARMUP_FOR_MASS_MATRIX = 100


class WarmupPlan(NamedTuple):
    """What a Langevin sampler's warmup starts from and adapts.

    num_steps:              warmup steps (each one kernel transition)
    step_size:              the initial step size (kept if not adapted)
    target_acceptance_rate: adapt the step size by dual averaging to this mean
                            acceptance rate (of the kernel's ``info.acceptance_rate``);
                            None: a fixed step (burn-in)
    inverse_mass_matrix:    the initial diagonal inverse mass matrix (None: identity)
    adapt_mass_matrix:      estimate a diagonal inverse mass matrix (Stan's windows)
    statistic:              ``statistic(info) -> scalar`` whose mean dual averaging
                            drives to ``target_acceptance_rate`` (None:
                            ``info.acceptance_rate``)
    explore_acceptance_rate: for unadjusted kernels warming up Metropolis-tested
                            (:func:`metropolis_tested`): before the final fast window
                            (the second half without mass-matrix windows) the step is
                            dual-averaged to this mean of ``min(1, exp(-energy_error))``,
                            an efficient step for the tested chain to explore while the
                            mass matrix is learnt; ``statistic`` and the target tune
                            only the final window, the step of the draws (None: they
                            tune every step)
    mass_matrix_from_variance: ``fn(variance) -> inverse mass matrix``, applied to each
                            window's estimate, for a sampler that knows part of its
                            target's variance in closed form (entropy_mcmc's guide);
                            None: the estimate itself
    """

    num_steps: int
    step_size: float
    target_acceptance_rate: float | None = None
    inverse_mass_matrix: tuple[float, ...] | None = None
    adapt_mass_matrix: bool = False
    statistic: Callable[[Any], Array] | None = None
    explore_acceptance_rate: float | None = None
    mass_matrix_from_variance: Callable[[Array], Array] | None = None


# E[exp(-E^2 / (2 s^2))] = 1 / sqrt(1 + Var[E] / s^2) for E ~ N(0, Var[E])
ENERGY_VARIANCE_TARGET = 2.0**-0.5


def energy_variance_statistic(dim: int, desired_energy_variance: float) -> Callable[[Any], Array]:
    """The step-size statistic of an unadjusted kernel, ``exp(-E^2 / (2 d v))`` with ``E``
    its ``info.energy_error``, ``d = dim`` and ``v = desired_energy_variance``.

    For a centred Gaussian energy error its mean is ``1 / sqrt(1 + Var[E] / (d v))``, so
    dual averaging it to :data:`ENERGY_VARIANCE_TARGET` (``1/sqrt(2)``) sets
    ``Var[E] / d = v``, the rule of Robnik et al. (2023); unlike ``E^2``
    itself the statistic is bounded, so one wild step cannot throw the step size off,
    and a non-finite step gives 0 (the step shrinks).

    Example:
        >>> from types import SimpleNamespace
        >>> statistic = energy_variance_statistic(dim=2, desired_energy_variance=0.5)
        >>> round(float(statistic(SimpleNamespace(energy_error=jnp.array(1.0)))), 4)
        0.6065
    """
    scale = 2.0 * dim * desired_energy_variance

    def statistic(info: Any) -> Array:
        return jnp.exp(-jnp.square(info.energy_error) / scale)

    return statistic


def boolean_or_none(value: Any) -> str | None:
    """The check of a tri-state option: True, False or None (automatic)."""
    return None if value is None or isinstance(value, bool) else "must be True, False or None"


def check_mass_matrix_options(config: Any) -> None:
    """ValueError unless an explicit ``adapt_mass_matrix=True`` has no fixed
    ``inverse_mass_matrix`` beside it and at least ``MIN_WARMUP_FOR_MASS_MATRIX`` warmup
    steps (``adapt_mass_matrix=None``, the default, decides by itself:
    :func:`adapts_mass_matrix`)."""
    if config.adapt_mass_matrix and config.inverse_mass_matrix is not None:
        raise ValueError(
            "adapt_mass_matrix must be False or None when inverse_mass_matrix is given, got True"
        )
    if config.adapt_mass_matrix and config.num_warmup < MIN_WARMUP_FOR_MASS_MATRIX:
        raise ValueError(
            f"num_warmup must be >= {MIN_WARMUP_FOR_MASS_MATRIX} when adapt_mass_matrix "
            f"is True, got {config.num_warmup!r}"
        )


def adapts_mass_matrix(config: Any) -> bool:
    """Whether a config's warmup estimates the mass matrix: ``adapt_mass_matrix`` when
    given, else (None, the default) when no fixed ``inverse_mass_matrix`` is given and
    the warmup has at least ``MIN_WARMUP_FOR_MASS_MATRIX`` steps."""
    if config.adapt_mass_matrix is not None:
        return bool(config.adapt_mass_matrix)
    return config.inverse_mass_matrix is None and config.num_warmup >= MIN_WARMUP_FOR_MASS_MATRIX


@dataclasses.dataclass(frozen=True)
class MassMatrixSettings(SamplerConfig):
    """The preconditioner options of the Langevin samplers with a warmup (ula, mala,
    kinetic_langevin, randomized_midpoint), declared once and checked together."""

    inverse_mass_matrix: tuple[float, ...] | None = option(
        None, positive_tuple_or_none, "fixed diagonal inverse mass matrix (None: identity)"
    )
    adapt_mass_matrix: bool | None = option(
        None,
        boolean_or_none,
        "estimate a diagonal inverse mass matrix in warmup (None: unless "
        "inverse_mass_matrix is given or num_warmup < 100)",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_mass_matrix_options(self)


def stan_schedule(num_steps: int) -> np.ndarray:
    """blackjax's ``build_schedule`` (num_steps, 2): in a slow window, a window's end."""
    with jax.ensure_compile_time_eval():  # a constant, also when called under jit
        return np.asarray(build_schedule(num_steps), dtype=np.int32)


def mass_matrix_windows(num_steps: int) -> list[tuple[int, int]]:
    """The slow windows ``[(start, stop), ...]`` of a warmup of ``num_steps`` steps
    (blackjax's ``build_schedule``, Stan's): the inverse mass matrix in use after warmup
    is :func:`diagonal_inverse_mass_matrix` of the warmup positions ``[start:stop]`` of
    the last window.

    Example:
        >>> mass_matrix_windows(500)
        [(75, 100), (100, 150), (150, 250), (250, 450)]
    """
    schedule = stan_schedule(num_steps)
    slow, ends = np.flatnonzero(schedule[:, 0]), np.flatnonzero(schedule[:, 1]) + 1
    if slow.size == 0:
        return []
    starts = [int(slow[0])] + [int(e) for e in ends[:-1]]
    return [(start, int(end)) for start, end in zip(starts, ends, strict=True)]


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


def stay(state: Any) -> Any:
    """Where a rejected Metropolis-tested step leaves the chain: where it was."""
    return state


def metropolis_tested(
    kernel: Callable[..., tuple[Any, Any]], on_reject: Callable[[Any], Any] | None = None
) -> Callable[..., tuple[Any, Any]]:
    """``kernel`` (an unadjusted one, with ``info.energy_error``) whose step is kept with
    probability ``min(1, exp(-energy_error))``, else the chain stays at
    ``on_reject(state)`` (None: the state; a non-finite step never passes).

    The warmup of unadjusted samplers runs this: for ULA it is exactly MALA (Roberts and
    Tweedie 1996, section 1.4); for a kinetic splitting it is the test of generalised HMC
    on the shadow work (exact for OBABO, Horowitz 1991) without the velocity flip. An
    unadjusted chain started in the tails, or at a step the adaptation has not yet
    shrunk, can be thrown off to a region it never returns from; the test keeps the
    warmup where the step size and mass matrix can be learnt. Draws after warmup are
    not tested: the tested kernel takes a keyword ``test`` (default True; a traced
    boolean in a loop whose first steps are the warmup's), and keeps every step where
    it is False.

    Example:
        >>> from types import SimpleNamespace
        >>> import jax.numpy as jnp
        >>> jump = lambda key, state, logdensity_fn, step_size: (
        ...     state + 1.0, SimpleNamespace(energy_error=jnp.array(jnp.inf)))
        >>> state, _ = metropolis_tested(jump)(jax.random.key(0), jnp.zeros(2), None, 0.1)
        >>> state.tolist()
        [0.0, 0.0]
    """

    def tested(
        key: Array, state: Any, *args: Any, test: Array | bool = True, **kwargs: Any
    ) -> tuple[Any, Any]:
        step_key, accept_key = jax.random.split(key)
        new_state, info = kernel(step_key, state, *args, **kwargs)
        log_uniform = jnp.log(jax.random.uniform(accept_key))
        accept = log_uniform < -jnp.nan_to_num(info.energy_error, nan=jnp.inf)
        if test is not True:
            accept = accept | jnp.logical_not(test)
        kept = state if on_reject is None else on_reject(state)
        return jax.tree.map(lambda n, o: jnp.where(accept, n, o), new_state, kept), info

    return tested


def restarted_dual_averaging(da_init: Callable, da_final: Callable, da_state: Any) -> Any:
    """Dual averaging restarted from its averaged step, with the old state's dtypes."""
    fresh = da_init(da_final(da_state))
    return jax.tree.map(lambda new, old: jnp.asarray(new, jnp.result_type(old)), fresh, da_state)


class Adaptation(NamedTuple):
    """What a warmup adapts, carried from step to step.

    scale:          the diagonal preconditioner (sqrt of the inverse mass matrix; None:
                    identity)
    dual_averaging: blackjax's dual-averaging state of the step size
    mass_matrix:    blackjax's Welford state of the current slow window (None when the
                    mass matrix is not adapted)
    """

    scale: Array | None
    dual_averaging: Any
    mass_matrix: Any


class WarmupAdaptation:
    """A :class:`WarmupPlan`'s adaptation one step at a time: ``init``, ``step_size``
    (the step a warmup step uses), ``update`` (after warmup step ``t``, given its
    ``phase(t)``) and
    ``final_step_size``; :func:`run_warmup` scans it, and a sampler whose warmup runs in
    the draws' loop (:func:`~bayeswb.samplers.langevin.chain_kernel.langevin_chain_kernel`)
    calls it from its step.

    Each step's phase is its entries of four constant columns (``table``): in a slow
    window, a window's end, exploring (before the final fast window), and where dual
    averaging restarts (where the metric or its statistic changes).
    """

    def __init__(self, plan: WarmupPlan) -> None:
        self.plan = plan
        self.adapt_step = plan.target_acceptance_rate is not None
        self.statistic = plan.statistic or (lambda info: info.acceptance_rate)
        target = plan.target_acceptance_rate or 0.5
        self.da_init, self.da_update, self.da_final = dual_averaging_adaptation(target)
        self.explore_update = dual_averaging_adaptation(plan.explore_acceptance_rate or 0.5)[1]
        self.mm_init, self.mm_update, self.mm_final = mass_matrix_adaptation(
            is_diagonal_matrix=True
        )
        if plan.adapt_mass_matrix:
            schedule = stan_schedule(plan.num_steps)
            windows = mass_matrix_windows(plan.num_steps)
            final_start = windows[-1][1] if windows else 0
        else:
            schedule = np.zeros((plan.num_steps, 2), np.int32)
            final_start = plan.num_steps // 2
        restarts = schedule[:, 1].copy()
        if plan.explore_acceptance_rate is not None and final_start > 0:
            restarts[final_start - 1] = 1
        exploring = np.arange(plan.num_steps) < final_start
        # per step: in a slow window, window ends, exploring, restart
        self.table = (schedule[:, 0], schedule[:, 1], exploring, restarts)

    def init(self, state: Any, scale: Array | None, step_size: Array) -> Adaptation:
        """The adaptation before the first warmup step from the kernel's ``state``;
        ``scale`` the initial preconditioner (ones when the mass matrix is adapted from
        None)."""
        if not self.plan.adapt_mass_matrix:
            return Adaptation(scale, self.da_init(step_size), None)
        # the mass matrix is a flat (dim,) vector; other states may be any pytree
        dim = state.position.shape[-1]
        scale = jnp.ones(dim, step_size.dtype) if scale is None else scale
        return Adaptation(scale, self.da_init(step_size), self.mm_init(dim))

    def step_size(self, adaptation: Adaptation, step_size: Array) -> Array:
        """The step a warmup step uses (``step_size`` when it is not adapted)."""
        if not self.adapt_step:
            return step_size
        return jnp.exp(adaptation.dual_averaging.log_step_size)

    def phase(self, t: Array) -> tuple[Array, ...]:
        """Warmup step ``t``'s entries of the table."""
        return tuple(jnp.asarray(column)[t] for column in self.table)

    def update(
        self,
        adaptation: Adaptation,
        phase: tuple[Array, ...],
        state: Any,
        info: Any,
        position: Array,
    ) -> tuple[Any, Adaptation]:
        """After a warmup step in ``phase`` (its entries of the table; the kernel's new
        ``state`` and ``info``, its ``position`` in the target's coordinates): the adapted
        step size and mass matrix, and the state moved to a new whitening at a window's
        end."""
        in_slow_window, window_ends, is_exploring, restart = phase
        da_state = adaptation.dual_averaging
        if self.adapt_step:
            # a divergent step has statistic 0: it pushes the step size down, as it should
            updated = self.da_update(da_state, jnp.nan_to_num(self.statistic(info)))
            if self.plan.explore_acceptance_rate is not None:
                acceptance = jnp.exp(-jnp.nan_to_num(info.energy_error, nan=jnp.inf))
                explored = self.explore_update(da_state, jnp.minimum(acceptance, 1.0))
                updated = jax.tree.map(
                    lambda a, b: jnp.where(is_exploring, a, b), explored, updated
                )
            da_state = jax.lax.cond(
                restart == 1,
                lambda d: restarted_dual_averaging(self.da_init, self.da_final, d),
                lambda d: d,
                updated,
            )
        adaptation = adaptation._replace(dual_averaging=da_state)
        if not self.plan.adapt_mass_matrix:
            return state, adaptation
        mm_state = jax.lax.cond(
            in_slow_window == 1,
            lambda m: self.mm_update(m, position),
            lambda m: m,
            adaptation.mass_matrix,
        )
        carry = (state, adaptation._replace(mass_matrix=mm_state))
        return jax.lax.cond(window_ends == 1, self._end_window, lambda c: c, carry)

    def _end_window(self, carry: tuple[Any, Adaptation]) -> tuple[Any, Adaptation]:
        state, adaptation = carry
        inverse_mass_matrix = self.mm_final(adaptation.mass_matrix).inverse_mass_matrix
        if self.plan.mass_matrix_from_variance is not None:
            inverse_mass_matrix = self.plan.mass_matrix_from_variance(inverse_mass_matrix)
        new_scale = jnp.sqrt(inverse_mass_matrix)
        state = rescale_state(state, adaptation.scale, new_scale)
        dim = new_scale.shape[-1]
        return state, adaptation._replace(scale=new_scale, mass_matrix=self.mm_init(dim))

    def final_step_size(self, adaptation: Adaptation, step_size: Array) -> Array:
        """The step of the draws: the dual-averaged one when adapted."""
        if not self.adapt_step:
            return step_size
        return self.da_final(adaptation.dual_averaging).astype(step_size.dtype)


def run_warmup(
    key: Array,
    at_scale: Callable[[Array | None], tuple[KernelStep, TraceFn]],
    state: Any,
    scale: Array | None,
    step_size: Array,
    plan: WarmupPlan,
) -> tuple[Any, Array | None, Array, Any]:
    """Run ``plan`` from ``state`` (whitened by ``scale``; None: identity), one scan of
    :class:`WarmupAdaptation`'s steps.

    ``at_scale(scale) -> (kernel_step, trace)``: the kernel on the density whitened by
    ``scale`` (a traced array when the mass matrix is adapted),
    ``kernel_step(key, state, step_size) -> (state, info)``, and what each step keeps,
    ``trace(state, info, step_size) -> (position, stats)`` with the position in the
    target's coordinates. Each step is traced with the step size it used. Returns the
    final state, scale and step size (the dual-averaged one when adapted), and the trace
    (None without warmup steps).
    """
    if plan.num_steps == 0:
        return state, scale, step_size, None
    warmup = WarmupAdaptation(plan)

    def step(carry: tuple[Any, Adaptation], inputs: tuple) -> tuple[tuple, Any]:
        state, adaptation = carry
        step_key, phase = inputs
        used = warmup.step_size(adaptation, step_size)
        kernel_step, trace = at_scale(adaptation.scale)
        state, info = kernel_step(step_key, state, used)
        position, stats = trace(state, info, used)
        state, adaptation = warmup.update(adaptation, phase, state, info, position)
        return (state, adaptation), (position, stats)

    adaptation = warmup.init(state, scale, step_size)
    keys = jax.random.split(key, plan.num_steps)
    inputs = (keys, warmup.table)
    (state, adaptation), trace = jax.lax.scan(step, (state, adaptation), inputs)
    return state, adaptation.scale, warmup.final_step_size(adaptation, step_size), trace
