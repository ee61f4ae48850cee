"""The long-run strategy of MCMC samplers: chunks of draws along the draw axis.

A sampler registered with a :class:`~bayeswb.core.sampler.ChainKernel` starts its chains
once (initialisation and warmup: one program), then draws ``chunk_size`` more from every
chain's carried state per piece (one program per chunk length). Draw ``t`` of a chain
always uses ``fold_in(sample_key, t)``, so chunked, resumed and whole runs make the same
draws. Pieces can be thinned (``thin``) or streamed to a NetCDF file (``stream``), so that
host memory is bounded by a chunk.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from bayeswb.core.config import SamplerConfig
from bayeswb.core.draws import Draws, exact_count
from bayeswb.core.log_evidence import combine_log_z
from bayeswb.core.result import Result, run_metadata
from bayeswb.core.sampler import SamplerSpec
from bayeswb.core.target import Target
from bayeswb.execution.checkpoint import flat, unflat
from bayeswb.execution.driver import (
    ChainLayout,
    compile_program,
    make_chain_mesh,
    map_chains,
    run_chains,
    to_host,
)
from bayeswb.execution.kernel import scan_draws, start_chain, start_costs, step_costs
from bayeswb.execution.long_run import LongRun, PieceStore
from bayeswb.execution.streaming import DrawStream

Array = jax.Array


def _constrain(target: Target, positions: Array) -> dict[str, Array]:
    return jax.vmap(jax.vmap(target.constrain))(positions)


@functools.lru_cache(maxsize=16)
def start_program(spec: SamplerSpec, target: Target, config: SamplerConfig, mesh: Any) -> Any:
    """Initialisation and warmup of every chain: (carry, warmup trace, warmup posterior,
    gradient counts per chain, per-chain sample keys)."""
    kernel = spec.kernel
    assert kernel is not None

    def one_chain(key: Array) -> Any:
        return start_chain(kernel, key, target, config)

    def start(key: Array) -> Any:
        carry, warmup, start_grads, sample_keys = run_chains(
            key, config.num_chains, one_chain, ChainLayout(mesh)
        )
        warmup_posterior = None if warmup is None else _constrain(target, warmup[0])
        return carry, warmup, warmup_posterior, start_grads, sample_keys

    return jax.jit(start)


@functools.lru_cache(maxsize=16)
def chunk_program(
    spec: SamplerSpec, target: Target, config: SamplerConfig, mesh: Any, length: int
) -> Any:
    """``length`` more draws of every chain from its carry: (carry, piece, costs)."""
    kernel = spec.kernel
    assert kernel is not None

    def one_chain(carry: Any, sample_key: Array, first: Array) -> Any:
        return scan_draws(kernel, carry, sample_key, first, length, target, config)

    def chunk(carry: Any, sample_keys: Array, first: Array) -> Any:
        carry, (positions, stats) = map_chains(
            lambda c, k: one_chain(c, k, first), carry, sample_keys, mesh=mesh
        )
        piece = {
            "positions": positions,
            "stats": stats,
            "posterior": _constrain(target, positions),
        }
        return carry, piece, step_costs(kernel, stats)

    return jax.jit(chunk)


@dataclasses.dataclass
class DrawChunks:
    """Strategy state: the chains' carries and keys, warmup draws, thinning, the mesh."""

    kind: ClassVar[str] = "draws"
    unit: ClassVar[str] = "draw"
    axis: ClassVar[int] = 1

    carry: Any
    sample_keys: Array
    mesh: Any
    thin: int = 1
    warmup: dict[str, Any] = dataclasses.field(default_factory=dict)

    def total(self, config: SamplerConfig) -> int:
        return config.num_samples

    def compile(self, run: LongRun, length: int) -> Any:
        program = chunk_program(run.spec, run.target, run.config, self.mesh, length)
        # the host keeps every chunk's (thinned) draws, unless they go to a stream
        kept = 1.0 if run.stream is not None else run.config.num_samples / (length * self.thin)
        args = (self.carry, self.sample_keys, jnp.asarray(run.done))
        return compile_program(program, *args, kept=max(kept, 1.0))

    def advance(self, run: LongRun, program: Any, length: int) -> tuple[Any, int, int]:
        carry, piece, costs = program(self.carry, self.sample_keys, jnp.asarray(run.done))
        piece, (grads, evals) = to_host((piece, costs))
        jax.block_until_ready(carry)
        self.carry = carry
        piece = jax.tree.map(lambda a: a[:, :: self.thin], piece)
        return piece, exact_count(grads), exact_count(evals)

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta = {"thin": self.thin, "has_warmup": bool(self.warmup)}
        arrays = flat("carry", self.carry) | flat("sample_keys", self.sample_keys)
        return meta, arrays | flat("warmup", self.warmup)

    def log_z(self, spec: SamplerSpec) -> Array | None:
        """Each chain's log-evidence estimate from its carry, for kernels that make one."""
        assert spec.kernel is not None
        if spec.kernel.log_z is None:
            return None
        return jax.jit(jax.vmap(spec.kernel.log_z))(self.carry)

    def result(self, run: LongRun, partial: bool) -> Result:
        if run.stream is not None:
            return _streamed_result(run, partial, self.log_z(run.spec))
        assert run.store is not None
        gathered = run.store.gathered()
        draws = Draws(
            positions=gathered["positions"],
            stats=gathered["stats"],
            warmup_positions=self.warmup.get("positions"),
            warmup_stats=self.warmup.get("stats") or {},
            n_grad_evals=run.n_grad,
            n_logdensity_evals=run.n_logdensity,
            log_z=self.log_z(run.spec),
        )
        return run.to_result(draws, gathered["posterior"], self.warmup.get("posterior"), partial)

    @classmethod
    def start(
        cls,
        spec: SamplerSpec,
        target: Target,
        config: SamplerConfig,
        key: Array,
        devices: Any,
        chunk_size: int,
        thin: int,
        checkpoint: str | None,
        stream: str | None,
    ) -> LongRun:
        """Start the chains (one program) and return the run ready for its chunks."""
        if chunk_size % thin:
            raise ValueError(f"thin must be a positive integer dividing chunk_size, got {thin!r}")
        mesh = make_chain_mesh(config.num_chains, devices)
        start = time.perf_counter()
        program = compile_program(start_program(spec, target, config, mesh), key)
        compile_s, start = time.perf_counter() - start, time.perf_counter()
        carry, warmup, warmup_posterior, start_grads, sample_keys = program(key)
        warmup, warmup_posterior, start_grads = to_host((warmup, warmup_posterior, start_grads))
        strategy = cls(carry, sample_keys, mesh, thin)
        if warmup is not None:
            strategy.warmup = {
                "positions": warmup[0],
                "stats": warmup[1],
                "posterior": warmup_posterior,
            }
        draw_stream = None
        if stream is not None:
            draw_stream = DrawStream(stream, config.num_chains, strategy.warmup)
        run = _long_run(spec, target, config, strategy, chunk_size, checkpoint, draw_stream)
        run.compile_s, run.sample_s = compile_s, time.perf_counter() - start
        assert spec.kernel is not None
        grads, logdensity_evals = start_costs(spec.kernel, start_grads)
        run.n_grad, run.n_logdensity = exact_count(grads), exact_count(logdensity_evals)
        return run

    @classmethod
    def restore(
        cls,
        meta: dict[str, Any],
        arrays: dict[str, np.ndarray],
        spec: SamplerSpec,
        target: Target,
        config: SamplerConfig,
        path: str,
        devices: Any,
    ) -> LongRun:
        """The run saved in a checkpoint, every part checked against this sampler's shapes."""
        if spec.kernel is None:
            raise ValueError(f"checkpoint of draws, but {spec.name!r} is not an MCMC kernel")
        mesh = make_chain_mesh(config.num_chains, devices)
        shapes = jax.eval_shape(start_program(spec, target, config, mesh), jax.random.key(0))
        carry_like, warmup_like, warmup_posterior_like, _, keys_like = shapes
        carry = unflat("carry", carry_like, arrays)
        strategy = cls(carry, unflat("sample_keys", keys_like, arrays), mesh, meta["thin"])
        if meta["has_warmup"]:
            like = {
                "positions": warmup_like[0],
                "stats": warmup_like[1],
                "posterior": warmup_posterior_like,
            }
            strategy.warmup = jax.tree.map(np.asarray, unflat("warmup", like, arrays))
        stream = None
        if meta["stream"] is not None:
            # checked to be this run's stream before anything is appended to it
            stream = DrawStream.reopen(meta["stream"], meta["kept"], meta.get("stream_id"))
        run = _long_run(spec, target, config, strategy, meta["chunk_size"], path, stream)
        run.done, run.n_grad, run.n_logdensity = meta["done"], meta["n_grad"], meta["n_logdensity"]
        if stream is None and meta["kept"]:
            assert run.store is not None
            piece_like = jax.eval_shape(
                chunk_program(spec, target, config, mesh, 1), carry_like, keys_like, 0
            )[1]
            run.store.restore(piece_like, meta["kept"], arrays)
        return run


def _long_run(
    spec: SamplerSpec,
    target: Target,
    config: SamplerConfig,
    strategy: DrawChunks,
    chunk_size: int,
    checkpoint: str | None,
    stream: DrawStream | None,
) -> LongRun:
    kept_total = -(-config.num_samples // strategy.thin)
    store = None if stream is not None else PieceStore(DrawChunks.axis, kept_total)
    return LongRun(spec, target, config, strategy, chunk_size, checkpoint, store, stream)


def _streamed_result(run: LongRun, partial: bool, log_z_per_run: Array | None) -> Result:
    """Finish the stream file and read it back lazily: host memory stays bounded. A
    kernel's log Z (pooled over the chains) goes into the file's metadata."""
    assert run.stream is not None
    cost = {"n_grad_evals": run.n_grad, "n_logdensity_evals": run.n_logdensity}
    per_run = None if log_z_per_run is None else np.asarray(log_z_per_run)
    log_z, log_z_se = combine_log_z(per_run)
    metadata = run_metadata(
        run.spec.name,
        run.target.name,
        run.config.to_dict(),
        cost | run.timings(),
        partial,
        log_z,
        log_z_se,
    )
    run.stream.finish(metadata)
    result = Result.load(run.stream.path)
    if partial:
        # a partial run is resumed by appending to the same file, which HDF5 will not
        # open for writing while this result holds it open for reading
        for group in result.idata.groups():
            getattr(result.idata, group).load().close()
    return result
