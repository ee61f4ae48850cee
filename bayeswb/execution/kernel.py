"""MCMC samplers in two pieces, so that one code path runs them whole or in chunks.

A :class:`ChainKernel` is a sampler's ``start`` (one chain's initialisation and warmup,
returning a ``carry``: the kernel state plus the tuned parameters) and ``step`` (one
transition). :func:`run_whole` runs ``start`` and a ``lax.scan`` of ``step`` in one compiled
program; :mod:`bayeswb.execution.long_run` runs the same two pieces in chunks, with checkpoints.
The key of draw ``t`` of a chain is ``fold_in(sample_key, t)`` in both, so a chunked run,
a resumed run and a whole run make the same draws. A kernel whose ``step`` adapts during
warmup (``ChainKernel.warmup_steps``: nuts, hmc, ula, mala, kinetic_langevin,
randomized_midpoint) has its warmup steps as steps ``0, ..., num_warmup - 1`` and its
draws after them: run whole, all are one scan; in
chunks, the warmup steps are the start's program.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from bayeswb.core.draws import Count, Draws, chain_draws
from bayeswb.core.sampler import ChainKernel, StartCost, Trace
from bayeswb.execution.driver import ChainLayout, run_chains

Array = jax.Array
Carry = Any


def step_costs(kernel: ChainKernel, stats: dict[str, Array]) -> tuple[Count, Count]:
    """Gradient and log-density evaluations of traced transitions, one entry per
    transition (each small: one draw's), summed exactly on the host (:class:`Count`)."""
    grads = Count.of(kernel.grads(stats))
    if kernel.logdensity_evals is None:
        return grads, grads
    return grads, Count.of(kernel.logdensity_evals(stats))


def start_costs(kernel: ChainKernel, start_cost: Any) -> tuple[Count, Count]:
    """Gradient and log-density evaluations of the chains' starts (``start``'s third
    output, gathered over chains): a :class:`StartCost`, or gradients alone, whose
    log densities are as many, or none for a kernel that counts its own per step."""
    if isinstance(start_cost, StartCost):
        return Count.of(start_cost.grads), Count.of(start_cost.logdensity_evals)
    grads = Count.of(start_cost)
    return grads, (Count() if kernel.logdensity_evals else grads)


def warmup_steps(kernel: ChainKernel, config: Any) -> int:
    """How many of a chain's steps are warmup steps (0 when ``start`` does the warmup)."""
    return 0 if kernel.warmup_steps is None else kernel.warmup_steps(config)


def _scan_steps(
    kernel: ChainKernel, carry: Carry, sample_key: Array, steps: Array, target: Any, config: Any
) -> tuple[Carry, Trace]:
    """One chain's ``steps`` (``lax.scan``): step ``t`` draws with ``fold_in(sample_key,
    t)``; warmup steps come first."""

    def one_step(carry: Carry, t: Array) -> tuple[Carry, Trace]:
        return kernel.step(jax.random.fold_in(sample_key, t), carry, target, config)

    return jax.lax.scan(one_step, carry, steps)


def _split_warmup(
    kernel: ChainKernel, start_cost: Any, trace: Trace, num_warmup: int
) -> tuple[Trace, Any, Trace]:
    """A scan that began with ``num_warmup`` warmup steps, as (warmup trace, the start's
    cost with theirs appended, the draws' trace)."""
    warmup = jax.tree.map(lambda a: a[:num_warmup], trace)
    draws = jax.tree.map(lambda a: a[num_warmup:], trace)
    assert not isinstance(start_cost, StartCost), "a step warmup counts gradients only"
    start_cost = jnp.append(start_cost, kernel.grads(warmup[1]))
    return warmup, start_cost, draws


def _start_and_scan(
    kernel: ChainKernel, chain_key: Array, target: Any, config: Any, num_draws: int
) -> tuple[Carry, Trace | None, Array | StartCost, Array, Trace | None]:
    """``start`` of one chain, then its warmup steps and first ``num_draws`` draws as one
    scan: (carry, warmup trace, start cost, the key its draws derive from, draws' trace)."""
    start_key, sample_key = jax.random.split(chain_key)
    carry, warmup_trace, start_cost = kernel.start(start_key, target, config)
    num_warmup = warmup_steps(kernel, config)
    trace = None
    if num_warmup + num_draws > 0:
        steps = jnp.arange(num_warmup + num_draws)
        carry, trace = _scan_steps(kernel, carry, sample_key, steps, target, config)
        if num_warmup > 0:
            warmup_trace, start_cost, trace = _split_warmup(kernel, start_cost, trace, num_warmup)
    return carry, warmup_trace, jax.tree.map(jnp.asarray, start_cost), sample_key, trace


def start_chain(
    kernel: ChainKernel, chain_key: Array, target: Any, config: Any
) -> tuple[Carry, Trace | None, Array | StartCost, Array]:
    """``start`` of one chain and its warmup steps, plus the key its draws derive from."""
    return _start_and_scan(kernel, chain_key, target, config, 0)[:4]


def scan_draws(
    kernel: ChainKernel,
    carry: Carry,
    sample_key: Array,
    first: Array | int,
    length: int,
    target: Any,
    config: Any,
) -> tuple[Carry, Trace]:
    """Draws ``first, ..., first + length - 1`` of one chain (``lax.scan``), after its
    warmup steps."""
    steps = warmup_steps(kernel, config) + first + jnp.arange(length)
    return _scan_steps(kernel, carry, sample_key, steps, target, config)


def run_whole(
    key: Array, target: Any, config: Any, kernel: ChainKernel, layout: ChainLayout | None = None
) -> Draws:
    """All chains, warmup and ``config.num_samples`` draws, as one program (chains laid out
    by ``layout``: see :func:`~bayeswb.execution.driver.run_chains`)."""

    def one_chain(chain_key: Array) -> tuple[Trace | None, Trace, Any, Array | None]:
        # warmup steps and draws in one scan: one copy of the kernel's step
        carry, warmup_trace, start_cost, _, trace = _start_and_scan(
            kernel, chain_key, target, config, config.num_samples
        )
        assert trace is not None, "a run makes at least one draw"
        log_z = None if kernel.log_z is None else kernel.log_z(carry)
        return warmup_trace, trace, start_cost, log_z

    warmup_trace, trace, start_cost, log_z = run_chains(key, config.num_chains, one_chain, layout)
    # per chain (or per warmup step), summed on the host
    start_grads, start_logdensity_evals = start_costs(kernel, start_cost)
    grads, logdensity_evals = step_costs(kernel, trace[1])
    draws = chain_draws(
        warmup_trace, trace, start_grads + grads, start_logdensity_evals + logdensity_evals
    )
    return draws._replace(log_z=log_z)
