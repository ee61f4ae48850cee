"""``bw.sample``: run any registered sampler on any target, into a :class:`Result`."""

from __future__ import annotations

import functools
import time
import weakref
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from bayeswb.core.config import SamplerConfig
from bayeswb.core.draws import Draws
from bayeswb.core.registry import build_model
from bayeswb.core.result import Result, build_idata, combine_log_z
from bayeswb.core.sampler import SAMPLERS, SamplerSpec
from bayeswb.core.target import Target
from bayeswb.execution import long_run, run_batches
from bayeswb.execution.driver import ChainLayout, make_chain_mesh, to_host

Array = jax.Array


def as_key(seed: int | Array) -> Array:
    """A typed PRNG key from an int seed, a typed key, or a raw uint32 key."""
    if isinstance(seed, int | np.integer) and not isinstance(seed, bool):
        return jax.random.key(int(seed))
    if isinstance(seed, jax.Array):
        if jax.dtypes.issubdtype(seed.dtype, jax.dtypes.prng_key):
            return seed
        if seed.dtype == np.uint32 and seed.shape == (2,):
            return jax.random.wrap_key_data(seed)
    raise ValueError(f"seed must be an int or a jax.random.key, got {seed!r}")


def constrained_run(
    key: Array,
    spec: SamplerSpec,
    target: Target,
    config: SamplerConfig,
    layout: ChainLayout | None = None,
) -> Any:
    """The run as one function of the key: the sampler's Draws, then the draws (and warmup
    draws) constrained, each a dict of (chain, draw, ...) arrays."""
    draws = spec.run(key, target, config, layout if spec.independent_runs else None)
    constrain_all = jax.vmap(jax.vmap(target.constrain))
    posterior = constrain_all(draws.positions)
    warmup_posterior = (
        constrain_all(draws.warmup_positions) if draws.warmup_positions is not None else None
    )
    return draws, posterior, warmup_posterior


@functools.lru_cache(maxsize=16)
def _compiled(
    spec: SamplerSpec,
    target: Target,
    config: SamplerConfig,
    key_type: Any,
    mesh: Any,
    x64: bool,
) -> Any:
    # keyed on (sampler, target identity, config, mesh, precision): a repeated run does
    # not recompile
    layout = ChainLayout(mesh=mesh)
    program = functools.partial(
        constrained_run, spec=spec, target=target, config=config, layout=layout
    )
    return jax.jit(program).lower(key_type).compile()


def sample(
    target: Target | str,
    sampler: str,
    seed: int | Array = 0,
    num_chains: int = 4,
    num_samples: int = 1000,
    num_warmup: int | None = None,
    devices: Sequence[jax.Device] | None = None,
    chunk_size: int | None = None,
    checkpoint: str | None = None,
    thin: int = 1,
    progress: bool | None = None,
    stream: str | None = None,
    x64: bool = False,
    **options: Any,
) -> Result:
    """Run ``sampler`` on ``target`` and return a :class:`Result` holding ArviZ data.

    Args:
        target: a :class:`Target` or a registered model name (default parameters).
        sampler: a registered sampler name (``bw.samplers.names()``).
        seed: int or ``jax.random.key``; the same seed and config give the same draws.
        num_chains: MCMC chains, or independent runs of a particle method.
        num_samples: draws per chain, or particles per run.
        num_warmup: warmup/tuning steps per chain; None uses the sampler's default.
        devices: devices to spread the chains over (default: all devices, those of
            every process after ``jax.distributed.initialize``). The chain axis is
            sharded over ``gcd(num_chains, len(devices))`` of them; the draws are the
            same as on one device, and every process receives all of them.
        chunk_size: run in compiled chunks of this many draws per chain (MCMC samplers
            with a :class:`~bayeswb.core.sampler.ChainKernel`, see
            :mod:`bayeswb.execution.long_run`) or
            of this many independent runs (particle, importance and VI samplers, see
            :mod:`bayeswb.execution.run_batches`); the draws are those of a whole run. Device
            memory is then bounded by a chunk, Ctrl-C returns the draws so far
            (``Result.partial``), and a progress bar shows at a terminal.
        checkpoint: file to save the run to after every chunk (atomically);
            ``bw.resume(checkpoint)`` continues it with the same draws.
        thin: keep every ``thin``-th draw of a chunked MCMC run (must divide
            ``chunk_size``).
        progress: show the chunked run's progress bar (None: only at a terminal).
        stream: NetCDF file to append each chunk's draws to instead of keeping them in
            memory; the Result then reads that file lazily (a chunked MCMC run).
        x64: run in double precision (``jax.enable_x64``) for numerics that need it;
            the draws are then float64.
        **options: fields of the sampler's config dataclass; unknown ones are an error.

    Returns:
        Result with ``idata`` (posterior draws shaped (chain, draw, ...)), ``log_z``,
        ``log_z_se`` and ``cost`` (gradient and density evaluations, compile and
        sampling seconds). The whole run is one compiled XLA program.

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample("funnel", "nuts", seed=1, num_chains=2, num_samples=100,
        ...               num_warmup=100)
        >>> sorted(r.cost)
        ['compile_s', 'n_grad_evals', 'n_logdensity_evals', 'sample_s']
    """
    if isinstance(target, str):
        target = build_model(target)
    if not isinstance(target, Target):
        raise ValueError(f"target must be a bayeswb.Target or a model name, got {target!r}")
    spec = SAMPLERS.get(sampler)
    settings = {"num_chains": num_chains, "num_samples": num_samples, **options}
    if num_warmup is not None:
        settings["num_warmup"] = num_warmup
    config = spec.make_config(**settings)
    key = as_key(seed)
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    with jax.enable_x64(bool(x64)):
        checked = _checked.setdefault(target, set())
        if bool(x64) not in checked:
            target.check(jax.random.fold_in(key, 0))
            checked.add(bool(x64))
        in_pieces = chunk_size is not None or checkpoint is not None or thin != 1 or stream
        if in_pieces and spec.kernel is None:
            if not spec.independent_runs:
                raise ValueError(
                    f"sampler {spec.name!r} cannot run in chunks (chunk_size/checkpoint): its "
                    "chains are not independent runs"
                )
            if thin != 1 or stream:
                raise ValueError(
                    f"thin and stream apply to MCMC draws; {spec.name!r} makes independent "
                    "runs, which run in batches of chunk_size"
                )
            return run_batches.sample_in_batches(
                spec, target, config, key, devices, chunk_size, checkpoint, progress
            )
        if in_pieces:
            return long_run.sample_in_chunks(
                spec, target, config, key, devices, chunk_size, checkpoint, progress, thin, stream
            )
        return _sample_whole(spec, target, config, key, devices, bool(x64))


# the precisions (x64 or not) each target's initial point was checked in
_checked: weakref.WeakKeyDictionary[Target, set[bool]] = weakref.WeakKeyDictionary()


def _sample_whole(
    spec: SamplerSpec,
    target: Target,
    config: SamplerConfig,
    key: Array,
    devices: Sequence[jax.Device] | None,
    x64: bool,
) -> Result:
    start = time.perf_counter()
    hits = _compiled.cache_info().hits
    mesh = make_chain_mesh(config.num_chains, devices)
    key_type = jax.ShapeDtypeStruct(key.shape, key.dtype)
    compiled = _compiled(spec, target, config, key_type, mesh, x64)
    compile_s = 0.0 if _compiled.cache_info().hits > hits else time.perf_counter() - start

    start = time.perf_counter()
    draws, posterior, warmup_posterior = to_host(compiled(key))
    sample_s = time.perf_counter() - start
    cost = {"compile_s": compile_s, "sample_s": sample_s}
    return make_result(spec, target, config, draws, posterior, warmup_posterior, cost)


def make_result(
    spec: SamplerSpec,
    target: Target,
    config: SamplerConfig,
    draws: Draws,
    posterior: dict[str, Any],
    warmup_posterior: dict[str, Any] | None,
    cost: dict[str, float],
    partial: bool = False,
) -> Result:
    """A :class:`Result` from a run's :class:`Draws` and constrained draws."""
    log_z_per_run = None if draws.log_z is None else np.asarray(draws.log_z)
    log_z, log_z_se = combine_log_z(log_z_per_run)
    idata = build_idata(
        posterior=posterior,
        positions=draws.positions,
        stats=draws.stats,
        log_weights=draws.log_weights,
        log_z_per_run=log_z_per_run,
        warmup_posterior=warmup_posterior,
        warmup_stats=draws.warmup_stats,
        path_stats=draws.path_stats,
    )
    return Result(
        idata=idata,
        sampler=spec.name,
        target=target.name,
        config=config.to_dict(),
        cost={
            "n_grad_evals": int(draws.n_grad_evals),
            "n_logdensity_evals": int(draws.n_logdensity_evals),
            **cost,
        },
        log_z=log_z,
        log_z_se=log_z_se,
        partial=partial,
    )
