"""What a sampler is, for every layer: its registry entry and, for MCMC, its kernel.

A sampler is a config dataclass (:class:`~bayeswb.core.config.SamplerConfig`) and a pure
``run(key, target, config, layout=None) -> Draws``. ``layout`` says where the call's
chains sit (:class:`~bayeswb.execution.driver.ChainLayout`: a mesh to shard them over, a
batch of a larger run); a sampler hands it unchanged to the driver. An MCMC sampler also
gives its :class:`ChainKernel`, so that the execution layer can run it in chunks.

Example:
    >>> from bayeswb.core.sampler import SAMPLERS
    >>> SAMPLERS.kind
    'sampler'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from bayeswb.core.config import SamplerConfig, make_config
from bayeswb.core.draws import Draws
from bayeswb.core.registry import Registry
from bayeswb.core.target import Target

Array = jax.Array
Carry = Any
Trace = tuple[Array, dict[str, Array]]
RunFn = Callable[..., Draws]


class StartCost(NamedTuple):
    """What a chain's ``start`` spent, when its log-density evaluations are not its
    gradient evaluations: each an int or an int array whose entries add up to it."""

    grads: Array
    logdensity_evals: Array


class ChainKernel(NamedTuple):
    """An MCMC sampler as pieces the chain driver can run whole or in chunks.

    start(key, target, config) -> (carry, warmup_trace, start_grads): one chain's
        initialisation and warmup; ``warmup_trace`` is ``(positions, stats)`` or None;
        ``start_grads`` the gradient evaluations spent so far: an int, or an int array
        whose entries add up to it (one per warmup step, so that no entry can wrap); or
        a :class:`StartCost` when the start's log-density count differs.
    step(key, carry, target, config) -> (carry, (position, stats)): one transition.
    grads(stats) -> gradient evaluations of each traced transition (same shape as a
        stat), totalled on the host in Python ints (``core.draws.exact_count``) so the
        count is exact at any size.
    logdensity_evals(stats) -> log-density evaluations of each traced transition, for
        samplers whose log-density count is not their gradient count (stochastic-gradient
        ones evaluate the full-data log density only for each draw's ``lp``); then only
        these are counted, plus the start's if it gives a :class:`StartCost`. None: the
        log-density count is the gradient count.
    log_z(carry) -> one chain's log-evidence estimate from its last carry, for kernels
        that estimate one (parallel tempering's stepping stones): the run's ``log_z``,
        whole or chunked. None: no estimate.
    warmup_steps(config) -> how many of a chain's first ``step`` calls are warmup, for
        kernels whose ``step`` adapts while it warms up (it tells the phases apart by a
        counter in its carry); ``start`` then only initialises, with a ``start_grads``
        array. The driver runs these steps as the first of the draws' scan, so the
        kernel is compiled once; their trace is the warmup trace and their cost the
        start's. None: ``start`` does all of the warmup.
    """

    start: Callable[[Array, Any, Any], tuple[Carry, Trace | None, Array | StartCost]]
    step: Callable[[Array, Carry, Any, Any], tuple[Carry, Trace]]
    grads: Callable[[dict[str, Array]], Array]
    logdensity_evals: Callable[[dict[str, Array]], Array] | None = None
    log_z: Callable[[Carry], Array] | None = None
    warmup_steps: Callable[[Any], int] | None = None


@dataclasses.dataclass(frozen=True)
class SamplerSpec:
    """A registered sampler: its name, config class and pure ``run`` function.

    ``kernel``: the MCMC kernel in pieces (these samplers run in chunks of draws).
    ``independent_runs``: the ``num_chains`` chains or runs are independent and go through
    the driver's ``run_chains`` with the ``layout`` they are given, so they can be sharded
    over devices and run in batches of runs. False for samplers whose chains share state
    (flow_mcmc trains one flow on all of them).
    ``needs_minibatch``: the sampler reads the target's minibatch interface
    (``Target.minibatch``) and runs only on targets that have one.
    """

    name: str
    config_cls: type[SamplerConfig]
    run: RunFn
    family: str
    kernel: ChainKernel | None = None
    independent_runs: bool = True
    needs_minibatch: bool = False

    def runs_on(self, target: Target) -> bool:
        """Whether the sampler can run on ``target`` (minibatch samplers need the interface)."""
        return not self.needs_minibatch or target.minibatch is not None

    def make_config(self, **options: Any) -> SamplerConfig:
        """Validated config; unknown options and bad values are ValueErrors naming them."""
        return make_config(self.config_cls, options)


BUILT_IN = "bayeswb.samplers"  # the package of the built-in samplers, registered lazily
SAMPLERS: Registry[SamplerSpec] = Registry("sampler", provider=BUILT_IN)


def register_sampler(
    name: str,
    config_cls: type[SamplerConfig],
    family: str,
    kernel: ChainKernel | None = None,
    independent_runs: bool = True,
    needs_minibatch: bool = False,
) -> Callable[[RunFn], RunFn]:
    """Decorator registering ``run(key, target, config, layout=None) -> Draws`` as ``name``.

    An MCMC sampler that also gives its :class:`ChainKernel` (and whose ``run`` is
    :func:`bayeswb.execution.kernel.run_whole` of it) can run in chunks, with checkpoints
    (``bw.sample(..., chunk_size=...)``).
    """

    def decorate(run: RunFn) -> RunFn:
        if not run.__module__.startswith(BUILT_IN):
            # a sampler of the user's: the built-in samplers are registered first, so that
            # a name clash is an error here, not when a built-in module is imported later
            _ = name in SAMPLERS
        spec = SamplerSpec(
            name, config_cls, run, family, kernel, independent_runs, needs_minibatch
        )
        SAMPLERS.add(name, spec)
        return run

    return decorate
