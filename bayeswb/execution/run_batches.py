"""Samplers of independent runs in batches: checkpoints, resume, Ctrl-C and a progress bar.

Particle, importance and variational samplers (smc, ais, is, amis, vis, flow_vi, snf, the
VI baselines, ...) make ``num_chains`` independent runs through
:func:`bayeswb.execution.driver.run_chains`. Given ``chunk_size`` or ``checkpoint``, ``bw.sample``
runs them here, ``chunk_size`` runs per compiled batch. Within a batch the runs get the
keys the whole run would give them (:func:`bayeswb.execution.driver.run_batch`), so the batches
together make the whole run's draws, up to float rounding: XLA vectorises a batch of one
run differently from a batch of many, as it does chains on different devices. Float32
samplers with discrete adaptive decisions can amplify those last bits (AIS's step-size
adaptation on the banana: whole and one-run batches differ from step 1; with ``x64=True``
they agree to 1e-7). A resumed run makes bit for bit the draws of the uninterrupted run
with the same ``chunk_size``. Device memory is bounded by a batch; after
each batch the finished runs can be checkpointed (atomically, as for MCMC chunks in
:mod:`bayeswb.execution.long_run`) and :func:`bayeswb.resume` continues; Ctrl-C returns the runs
finished so far, marked ``partial``; a progress bar counts runs at a terminal.

A sampler whose chains share state (flow_mcmc trains one flow on all of them) does not
take its keys from ``run_chains`` and is refused with a clear error.

Cost counters are summed over batches. Work a sampler does once per call before its runs
(a pilot shared by all runs) is done once per batch, and counted so.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bayeswb.core.config import SamplerConfig
from bayeswb.core.draws import Draws
from bayeswb.core.progress import progress_bar
from bayeswb.core.result import Result
from bayeswb.core.sampler import SamplerSpec
from bayeswb.core.target import Target
from bayeswb.execution.driver import ChainLayout, make_chain_mesh, to_host
from bayeswb.execution.long_run import (
    flat,
    stop_after_chunk,
    unflat,
    write_checkpoint,
)

Array = jax.Array


@functools.lru_cache(maxsize=16)
def _batch_program(
    spec: SamplerSpec, target: Target, config: SamplerConfig, total: int, mesh: Any
) -> Any:
    """``config.num_chains`` runs, starting at run ``first`` of ``total``, as one program."""
    from bayeswb.execution.sample import constrained_run

    def program(key: Array, first: Array) -> dict[str, Any]:
        layout = ChainLayout(mesh=mesh, total=total, first=first)
        draws, posterior, warmup_posterior = constrained_run(key, spec, target, config, layout)
        counts = jnp.stack([jnp.asarray(draws.n_grad_evals), draws.n_logdensity_evals])
        runs = draws._replace(n_grad_evals=None, n_logdensity_evals=None)
        return {
            "draws": runs,
            "posterior": posterior,
            "warmup_posterior": warmup_posterior,
            "counts": counts,
        }

    return jax.jit(program)


@dataclasses.dataclass
class _BatchedRun:
    """A batched run's settings and the finished runs gathered so far (host arrays)."""

    spec: SamplerSpec
    target: Target
    config: SamplerConfig
    key: Array
    batch_size: int
    checkpoint: str | None
    devices: Any
    done: int = 0  # runs finished
    store: Any = None  # tree of (num_chains, ...) arrays, filled up to ``done``
    n_grad: int = 0
    n_logdensity: int = 0
    compile_s: float = 0.0
    sample_s: float = 0.0
    compiled: dict[int, Any] = dataclasses.field(default_factory=dict)  # by batch size

    def program(self, size: int) -> Any:
        """The compiled program of a batch of ``size`` runs (compiled once per size)."""
        if size not in self.compiled:
            start = time.perf_counter()
            config = dataclasses.replace(self.config, num_chains=size)
            mesh = make_chain_mesh(size, self.devices)
            program = _batch_program(self.spec, self.target, config, self.config.num_chains, mesh)
            self.compiled[size] = program.lower(self.key, jnp.asarray(0)).compile()
            self.compile_s += time.perf_counter() - start
        return self.compiled[size]

    def add(self, batch: dict[str, Any]) -> None:
        """Store finished runs (host arrays with a leading run axis) after those so far,
        into arrays allocated once for the whole run."""
        if self.store is None:
            total = self.config.num_chains
            self.store = jax.tree.map(lambda a: np.empty((total,) + a.shape[1:], a.dtype), batch)
        n = jax.tree.leaves(batch)[0].shape[0]
        for stored, new in zip(jax.tree.leaves(self.store), jax.tree.leaves(batch), strict=True):
            stored[self.done : self.done + n] = new
        self.done += n

    @property
    def runs(self) -> Any:
        """The finished runs: draws, posterior and warmup_posterior, (done, ...) arrays."""
        return jax.tree.map(lambda a: a[: self.done], self.store)


def _run_batches(run: _BatchedRun, progress: bool | None) -> Result:
    total = run.config.num_chains
    interrupted = False
    with stop_after_chunk() as stop:
        bar = progress_bar(progress, total, run.done, "run")
        try:
            while run.done < total and not stop.requested:
                size = min(run.batch_size, total - run.done)
                _one_batch(run, size)
                bar.update(size)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bar.close()
    return _result(run, interrupted or run.done < total)


def _one_batch(run: _BatchedRun, size: int) -> None:
    """Run the next ``size`` runs, keep them, and checkpoint."""
    program = run.program(size)
    start = time.perf_counter()
    out = to_host(program(run.key, jnp.asarray(run.done)))
    run.sample_s += time.perf_counter() - start
    grads, logdensity_evals = out.pop("counts")
    run.add(out)
    run.n_grad += int(grads)
    run.n_logdensity += int(logdensity_evals)
    if run.checkpoint is not None:
        save_batches(run)


def _result(run: _BatchedRun, partial: bool) -> Result:
    from bayeswb.execution.sample import make_result

    if run.done == 0:
        raise KeyboardInterrupt("interrupted before the first batch of runs finished")
    draws: Draws = run.runs["draws"]._replace(
        n_grad_evals=run.n_grad, n_logdensity_evals=run.n_logdensity
    )
    cost = {"compile_s": run.compile_s, "sample_s": run.sample_s}
    return make_result(
        run.spec,
        run.target,
        run.config,
        draws,
        run.runs["posterior"],
        run.runs["warmup_posterior"],
        cost,
        partial=partial,
    )


def sample_in_batches(
    spec: SamplerSpec,
    target: Target,
    config: SamplerConfig,
    key: Array,
    devices: Any,
    chunk_size: int | None,
    checkpoint: str | None,
    progress: bool | None,
) -> Result:
    """``bw.sample`` of a sampler of independent runs, ``chunk_size`` runs per batch."""
    chunk_size = config.num_chains if chunk_size is None else chunk_size
    run = _BatchedRun(spec, target, config, key, chunk_size, checkpoint, devices)
    return _run_batches(run, progress)


# --------------------------------------------------------------------------- checkpoints


def save_batches(run: _BatchedRun) -> None:
    """Checkpoint the finished runs (see :func:`bayeswb.execution.long_run.write_checkpoint`)."""
    meta = {
        "kind": "runs",
        "sampler": run.spec.name,
        "target": run.target.name,
        "dim": run.target.dim,
        "config": run.config.to_dict(),
        "chunk_size": run.batch_size,
        "done": run.done,
        "n_grad": run.n_grad,
        "n_logdensity": run.n_logdensity,
    }
    arrays = flat("key", run.key) | flat("runs", run.runs)
    write_checkpoint(run.checkpoint, meta, arrays)


def resume_batches(
    meta: dict[str, Any],
    arrays: dict[str, np.ndarray],
    spec: SamplerSpec,
    target: Target,
    config: SamplerConfig,
    path: str,
    devices: Any,
    progress: bool | None,
) -> Result:
    """Continue a batched run from its checkpoint (called by :func:`bayeswb.resume`)."""
    key = unflat("key", jax.random.key(0), arrays)
    run = _BatchedRun(spec, target, config, key, meta["chunk_size"], path, devices)
    run.n_grad, run.n_logdensity = meta["n_grad"], meta["n_logdensity"]
    one = dataclasses.replace(config, num_chains=1)
    shapes = jax.eval_shape(
        _batch_program(spec, target, one, config.num_chains, None), key, jnp.asarray(0)
    )
    shapes.pop("counts")
    like = jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct((meta["done"],) + leaf.shape[1:], leaf.dtype), shapes
    )
    run.add(jax.tree.map(np.asarray, unflat("runs", like, arrays)))
    return _run_batches(run, progress)
