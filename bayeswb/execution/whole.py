"""Whole runs: a sampler's run and the constraining of its draws as one compiled program."""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from typing import Any

import jax

from bayeswb.core.config import SamplerConfig
from bayeswb.core.result import Result
from bayeswb.core.sampler import SamplerSpec
from bayeswb.core.target import Target
from bayeswb.execution.driver import ChainLayout, compile_program, make_chain_mesh, to_host

Array = jax.Array


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
    return compile_program(jax.jit(program), key_type)


def sample_whole(
    spec: SamplerSpec,
    target: Target,
    config: SamplerConfig,
    key: Array,
    devices: Sequence[jax.Device] | None,
    x64: bool,
) -> Result:
    """The whole run as one compiled program (cached: a repeated run does not recompile)."""
    start = time.perf_counter()
    hits = _compiled.cache_info().hits
    mesh = make_chain_mesh(config.num_chains, devices)
    key_type = jax.ShapeDtypeStruct(key.shape, key.dtype)
    compiled = _compiled(spec, target, config, key_type, mesh, x64)
    compile_s = 0.0 if _compiled.cache_info().hits > hits else time.perf_counter() - start

    start = time.perf_counter()
    draws, posterior, warmup_posterior = to_host(compiled(key))
    sample_s = time.perf_counter() - start
    return Result.from_draws(
        draws,
        posterior,
        warmup_posterior,
        sampler=spec.name,
        target=target.name,
        config=config.to_dict(),
        timings={"compile_s": compile_s, "sample_s": sample_s},
    )
