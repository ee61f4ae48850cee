"""A Langevin-type sampler's :class:`~bayeswb.core.sampler.ChainKernel`, from its kernel.

A sampler of the family is written once, as a blackjax-style kernel (``init``,
``kernel(key, state, logdensity_fn, step_size) -> (State, Info)``), and described for
one target and config by a :class:`LangevinMethod` (that kernel, what a step reports,
its :class:`~bayeswb.samplers.langevin.warmup.WarmupPlan`). :func:`langevin_chain_kernel`
turns ``build(target, config) -> LangevinMethod`` into the pieces the chain driver runs
whole or in chunks: ``start`` (initial position, state, the shared warmup) and ``step``
(one transition), with a :class:`LangevinCarry` between them; or, given
``warmup_in_loop``, a ``start`` that only initialises and a ``step`` that also makes the
warmup's steps, the first of the loop (:class:`LoopWarmupCarry`): the kernel is
compiled once.

Example (a Metropolis-adjusted Langevin sampler from blackjax's MALA kernel):
    >>> import blackjax, jax
    >>> import bayeswb as bw
    >>> from bayeswb.execution.kernel import run_whole
    >>> from bayeswb.samplers.langevin.overdamped import MALAConfig, metropolis_trace
    >>> kernel = langevin_chain_kernel(
    ...     lambda target, config: LangevinMethod(
    ...         init=lambda key, position, logdensity_fn: blackjax.mala.init(
    ...             position, logdensity_fn),
    ...         kernel=blackjax.mala.build_kernel(),
    ...         trace=metropolis_trace,
    ...         warmup=WarmupPlan(config.num_warmup, config.step_size, 0.574),
    ...     )
    ... )
    >>> config = MALAConfig(num_chains=2, num_samples=50, num_warmup=50)
    >>> draws = run_whole(jax.random.key(0), bw.models.get("gaussian", dim=2), config, kernel)
    >>> draws.positions.shape, int(draws.n_grad_evals)
    ((2, 50, 2), 202)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from bayeswb.core.sampler import ChainKernel
from bayeswb.core.target import Target
from bayeswb.samplers.langevin.preconditioning import (
    initial_scale,
    to_position,
    to_whitened,
    whitened,
)
from bayeswb.samplers.langevin.warmup import (
    Adaptation,
    KernelStep,
    TraceFn,
    WarmupAdaptation,
    WarmupPlan,
    metropolis_tested,
    run_warmup,
)

Array = jax.Array
LogDensity = Callable[..., Array]

__all__ = [
    "LangevinCarry",
    "LangevinMethod",
    "LoopWarmupCarry",
    "WarmupPlan",
    "langevin_chain_kernel",
]


class LangevinMethod(NamedTuple):
    """A Langevin-type MCMC sampler for one target and config, in blackjax's pieces.

    init:          ``init(key, position, logdensity_fn) -> state``, the state at an
                   initial position (whitened coordinates)
    kernel:        ``kernel(key, state, logdensity_fn, step_size) -> (state, info)``
    trace:         ``trace(state, info, step_size) -> (position, stats)``, what a step
                   reports (position in whitened coordinates); every step has a
                   ``diverging`` stat
    warmup:        the :class:`~bayeswb.samplers.langevin.warmup.WarmupPlan`
    logdensity_fn: the density the kernel runs on (None: the target's ``log_density``)
    draw_trace:    what a draw reports, when it differs from a warmup step (None: trace)
    warmup_kernel: the kernel of warmup steps, when it differs (None: kernel)
    warmup_test:   for unadjusted samplers, whose warmup steps are their kernel's steps
                   Metropolis-tested
                   (:func:`~bayeswb.samplers.langevin.warmup.metropolis_tested`): what a
                   rejected step leaves the chain at, ``warmup_test(state)`` (``stay``
                   or ``flip_momentum``); None: the warmup steps are not tested
    warmup_grads_per_step: gradient evaluations of a warmup step, when they differ
                   from a draw's (None: the same)
    final_step_size: ``final_step_size(step_size, warmup_stats) -> step_size``, the step
                   of the draws from the warmup's (None: the warmup's)
    position_stats: ``position_stats(x, stats) -> stats``, a draw's stats completed
                   from its position in the target's coordinates (None: as traced)
    """

    init: Callable[[Array, Any, LogDensity], Any]
    kernel: Callable[[Array, Any, LogDensity, Array], tuple[Any, Any]]
    trace: TraceFn
    warmup: WarmupPlan
    logdensity_fn: LogDensity | None = None
    draw_trace: TraceFn | None = None
    warmup_kernel: Callable[[Array, Any, LogDensity, Array], tuple[Any, Any]] | None = None
    warmup_test: Callable[[Any], Any] | None = None
    warmup_grads_per_step: int | None = None
    final_step_size: Callable[[Array, dict[str, Array]], Array] | None = None
    position_stats: Callable[[Array, dict[str, Array]], dict[str, Array]] | None = None


class LangevinCarry(NamedTuple):
    """What a Langevin chain carries from draw to draw.

    state:     the kernel's state, in whitened coordinates
    scale:     the diagonal preconditioner, sqrt of the inverse mass matrix (None: identity)
    step_size: the step size (adapted in warmup, or the configured one)
    """

    state: Any
    scale: Array | None
    step_size: Array


class LoopWarmupCarry(NamedTuple):
    """What a Langevin chain whose warmup runs in the draws' loop carries.

    state:      the kernel's state, in whitened coordinates
    step_size:  the draws' step size (the initial one until warmup ends)
    adaptation: the warmup's :class:`~bayeswb.samplers.langevin.warmup.Adaptation`; its
                ``scale`` is the preconditioner of every step
    steps_done: steps made so far (warmup steps first)
    """

    state: Any
    step_size: Array
    adaptation: Adaptation
    steps_done: Array


def _at_scale(
    method: LangevinMethod,
    target: Target,
    scale: Array | None,
    trace: TraceFn,
    warmup: bool = False,
) -> tuple[KernelStep, TraceFn]:
    """The kernel (the warmup kernel if ``warmup``) on the density whitened by
    ``scale``, and ``trace`` in x coordinates."""
    logdensity_fn = whitened(method.logdensity_fn or target.log_density, scale)
    kernel = (method.warmup_kernel if warmup else None) or method.kernel
    if warmup and method.warmup_test is not None:
        kernel = metropolis_tested(method.kernel, method.warmup_test)

    def kernel_step(key: Array, state: Any, step_size: Array, **kwargs: Any) -> tuple[Any, Any]:
        return kernel(key, state, logdensity_fn, step_size, **kwargs)

    def trace_x(state: Any, info: Any, step_size: Array) -> Any:
        position, stats = trace(state, info, step_size)
        position = to_position(scale, position)
        if method.position_stats is not None and not warmup:
            stats = method.position_stats(position, stats)
        return position, stats

    return kernel_step, trace_x


def _initial_state(
    position_key: Array, init_key: Array, method: LangevinMethod, target: Target
) -> tuple[Any, Array | None, Array]:
    """A chain's kernel state at ``target.init(position_key)``, whitened by the plan's
    fixed preconditioner (None: identity), and the plan's initial step size."""
    scale = initial_scale(target, method.warmup.inverse_mass_matrix)
    position = to_whitened(scale, target.init(position_key))
    logdensity_fn = whitened(method.logdensity_fn or target.log_density, scale)
    state = method.init(init_key, position, logdensity_fn)
    dtype = jax.tree.leaves(position)[0].dtype
    return state, scale, jnp.asarray(method.warmup.step_size, dtype=dtype)


def num_warmup(config: Any) -> int:
    """A config's warmup steps: the loop's first steps for ``warmup_in_loop`` kernels."""
    return int(config.num_warmup)


def _loop_warmup_pieces(
    build: Callable[[Target, Any], LangevinMethod],
) -> tuple[Callable, Callable]:
    """``start`` and ``step`` of a chain whose warmup steps are the first steps of the
    draws' loop: the kernel is compiled once. Only for a method whose warmup and draws
    run the same kernel (Metropolis-tested in warmup for an unadjusted one: the test is
    switched off after it) and report the same way."""

    def method_of(target: Target, config: Any) -> LangevinMethod:
        method = build(target, config)
        same = (
            method.warmup_kernel is None
            and method.draw_trace is None
            and method.final_step_size is None
            and method.position_stats is None
            and method.warmup_grads_per_step is None
        )
        assert same, "a warmup in the draws' loop runs the draws' kernel and trace"
        assert method.warmup.num_steps == num_warmup(config)
        return method

    def start(key: Array, target: Target, config: Any) -> tuple[LoopWarmupCarry, None, Array]:
        method = method_of(target, config)
        position_key, init_key = jax.random.split(key)
        state, scale, step_size = _initial_state(position_key, init_key, method, target)
        adaptation = WarmupAdaptation(method.warmup).init(state, scale, step_size)
        # one gradient at initialisation; the warmup steps count their own
        return LoopWarmupCarry(state, step_size, adaptation, jnp.asarray(0)), None, jnp.asarray(1)

    def step(key: Array, carry: LoopWarmupCarry, target: Target, config: Any) -> tuple:
        method = method_of(target, config)
        warmup = WarmupAdaptation(method.warmup)
        num_warmup = method.warmup.num_steps
        warming = carry.steps_done < num_warmup
        used = jnp.where(
            warming, warmup.step_size(carry.adaptation, carry.step_size), carry.step_size
        )
        tested = method.warmup_test is not None
        kernel_step, trace_x = _at_scale(
            method, target, carry.adaptation.scale, method.trace, warmup=tested
        )
        # an unadjusted kernel is tested while it warms up, not after
        test = {"test": warming} if tested else {}
        state, info = kernel_step(key, carry.state, used, **test)
        position, stats = trace_x(state, info, used)
        carry = carry._replace(state=state, steps_done=carry.steps_done + 1)
        if num_warmup == 0:
            return carry, (position, stats)

        def adapt(carry: LoopWarmupCarry) -> LoopWarmupCarry:
            phase = warmup.phase(carry.steps_done - 1)
            state, adaptation = warmup.update(carry.adaptation, phase, carry.state, info, position)
            step_size = jnp.where(
                carry.steps_done == num_warmup,
                warmup.final_step_size(adaptation, carry.step_size),
                carry.step_size,
            )
            return LoopWarmupCarry(state, step_size, adaptation, carry.steps_done)

        # a cond, not a select: in a whole run the step counter is the same for all
        # chains (not batched), so the draws skip the adaptation's arithmetic
        return jax.lax.cond(warming, adapt, lambda c: c, carry), (position, stats)

    return start, step


def langevin_chain_kernel(
    build: Callable[[Target, Any], LangevinMethod],
    grads_per_step: int = 1,
    logdensity_evals_per_step: int | None = None,
    grads_stat: str | None = None,
    warmup_in_loop: bool = False,
) -> ChainKernel:
    """The :class:`~bayeswb.core.sampler.ChainKernel` of ``build(target, config)``.

    ``start`` splits its key three ways (initial position, ``init``, warmup), whitens the
    position by the plan's ``inverse_mass_matrix``, and runs the shared warmup
    (:func:`~bayeswb.samplers.langevin.warmup.run_warmup`); ``step`` is one transition of
    the kernel. Cost: ``init`` and each step spend one and ``grads_per_step`` gradient
    evaluations; ``logdensity_evals_per_step``: log densities per draw, when not one per
    gradient (then the start's are not counted).

    ``warmup_in_loop``, for a method whose warmup runs the draws' kernel (tested, for an
    unadjusted one: ``LangevinMethod.warmup_test``): its ``num_warmup`` warmup steps run
    as the first steps of the draws' loop (:class:`LoopWarmupCarry`,
    ``ChainKernel.warmup_steps``), so that the kernel and the target's gradient compile
    once, not once in ``start`` and once in ``step``.
    """

    def start(key: Array, target: Target, config: Any) -> tuple[LangevinCarry, Any, Array]:
        method = build(target, config)
        plan = method.warmup
        position_key, init_key, warmup_key = jax.random.split(key, 3)
        state, scale, step_size = _initial_state(position_key, init_key, method, target)
        state, scale, step_size, warmup_trace = run_warmup(
            warmup_key,
            lambda scale: _at_scale(method, target, scale, method.trace, warmup=True),
            state,
            scale,
            step_size,
            plan,
        )
        if method.final_step_size is not None and warmup_trace is not None:
            step_size = method.final_step_size(step_size, warmup_trace[1])
        # one chain's (the host sums the chains): int32 holds it, as the chain keeps its
        # num_steps warmup states, so num_steps is far below 2**31 / grads_per_step
        warmup_grads = method.warmup_grads_per_step or grads_per_step
        start_grads = jnp.asarray(1 + warmup_grads * plan.num_steps)
        if grads_stat is not None and warmup_trace is not None:
            start_grads = jnp.append(1, warmup_trace[1][grads_stat])
        elif grads_stat is not None:
            start_grads = jnp.asarray(1)
        return LangevinCarry(state, scale, step_size), warmup_trace, start_grads

    def step(key: Array, carry: LangevinCarry, target: Target, config: Any) -> tuple[Any, Any]:
        method = build(target, config)
        trace = method.draw_trace or method.trace
        kernel_step, trace_x = _at_scale(method, target, carry.scale, trace)
        state, info = kernel_step(key, carry.state, carry.step_size)
        return carry._replace(state=state), trace_x(state, info, carry.step_size)

    def per_step(count: int) -> Callable[[dict[str, Array]], Array]:
        return lambda stats: jnp.full_like(stats["diverging"], count, dtype=jnp.int32)

    logdensity_evals = None
    if logdensity_evals_per_step is not None:
        logdensity_evals = per_step(logdensity_evals_per_step)
    grads = per_step(grads_per_step)
    if grads_stat is not None:
        grads = lambda stats: stats[grads_stat]  # noqa: E731
    if not warmup_in_loop:
        return ChainKernel(start, step, grads, logdensity_evals)
    assert grads_stat is None, "a warmup in the draws' loop counts gradients per step"
    start, step = _loop_warmup_pieces(build)
    return ChainKernel(start, step, grads, logdensity_evals, warmup_steps=num_warmup)
