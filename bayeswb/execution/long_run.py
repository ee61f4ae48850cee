"""Long MCMC runs: draws in chunks, checkpoints, resume, Ctrl-C and a progress bar.

A sampler registered with a :class:`~bayeswb.execution.kernel.ChainKernel` runs here when
``bw.sample`` is given ``chunk_size`` or ``checkpoint``: one compiled program starts the
chains (initialisation and warmup), another draws ``chunk_size`` more from every chain's
carried state. Device memory is bounded by a chunk; the draws gather on the host (thinned
by ``thin`` if asked). After each chunk the run can be checkpointed: sampler states, keys
and the draws so far, written to a temporary file and renamed over the checkpoint, so a
kill leaves the previous checkpoint whole. :func:`resume` continues from it, and since
draw ``t`` always uses the key ``fold_in(sample_key, t)``, a resumed run makes exactly the
draws of an uninterrupted one. Ctrl-C stops after the chunk in flight and returns what was
drawn, marked ``partial``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import signal
import threading
import time
import zipfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bayeswb.core.config import SamplerConfig
from bayeswb.core.draws import Draws
from bayeswb.core.progress import progress_bar
from bayeswb.core.registry import MODELS, build_model
from bayeswb.core.result import Result, run_metadata
from bayeswb.core.sampler import SAMPLERS, SamplerSpec
from bayeswb.core.target import Target
from bayeswb.execution.driver import ChainLayout, make_chain_mesh, map_chains, run_chains, to_host
from bayeswb.execution.kernel import ChainKernel, scan_draws, start_chain, step_costs
from bayeswb.execution.streaming import DrawStream

Array = jax.Array
CHECKPOINT_FORMAT = 1


# --------------------------------------------------------------------------- programs


def _constrain(target: Target, positions: Array) -> dict[str, Array]:
    return jax.vmap(jax.vmap(target.constrain))(positions)


@functools.lru_cache(maxsize=16)
def _start_program(spec: SamplerSpec, target: Target, config: SamplerConfig, mesh: Any) -> Any:
    kernel: ChainKernel = spec.kernel

    def start(key: Array) -> Any:
        carry, warmup, start_grads, sample_keys = run_chains(
            key,
            config.num_chains,
            lambda k: start_chain(kernel, k, target, config),
            ChainLayout(mesh),
        )
        warmup_posterior = None if warmup is None else _constrain(target, warmup[0])
        return carry, warmup, warmup_posterior, jnp.sum(start_grads), sample_keys

    return jax.jit(start)


@functools.lru_cache(maxsize=16)
def _chunk_program(
    spec: SamplerSpec, target: Target, config: SamplerConfig, mesh: Any, length: int
) -> Any:
    kernel: ChainKernel = spec.kernel

    def chunk(carry: Any, sample_keys: Array, first: Array) -> Any:
        carry, (positions, stats) = map_chains(
            lambda c, k: scan_draws(kernel, c, k, first, length, target, config),
            carry,
            sample_keys,
            mesh=mesh,
        )
        costs = step_costs(kernel, stats)
        return carry, positions, stats, _constrain(target, positions), costs

    return jax.jit(chunk)


# --------------------------------------------------------------------------- the run


@dataclasses.dataclass
class _LongRun:
    """A chunked run's settings, carried state and the draws gathered so far (host)."""

    spec: SamplerSpec
    target: Target
    config: SamplerConfig
    chunk_size: int
    thin: int
    checkpoint: str | None
    carry: Any
    sample_keys: Array
    done: int = 0  # draws made per chain (before thinning)
    n_grad: int = 0
    n_logdensity: int = 0
    warmup: dict[str, Any] = dataclasses.field(default_factory=dict)
    store: dict[str, Any] | None = None  # (chains, kept draws of the whole run, ...) arrays
    kept: int = 0  # draws per chain stored so far (after thinning)
    divergences: int = 0
    stream: DrawStream | None = None  # draws go to this file instead of ``store``
    sample_s: float = 0.0
    compile_s: float = 0.0
    compiled: dict[int, Any] = dataclasses.field(default_factory=dict)  # by chunk length

    def add(self, draws: dict[str, Any]) -> None:
        """Store a chunk's (thinned) draws, a tree of (chains, n, ...) host arrays, into
        arrays allocated once for the whole run (no concatenation: no second copy)."""
        if "diverging" in draws["stats"]:
            self.divergences += int(np.sum(draws["stats"]["diverging"]))
        if self.stream is not None:
            self.stream.append(draws)
            self.kept = self.stream.kept
            return
        n = jax.tree.leaves(draws)[0].shape[1]
        if self.store is None:
            total = -(-self.config.num_samples // self.thin)
            self.store = jax.tree.map(
                lambda a: np.empty((a.shape[0], total) + a.shape[2:], a.dtype), draws
            )
        for stored, new in zip(jax.tree.leaves(self.store), jax.tree.leaves(draws), strict=True):
            stored[:, self.kept : self.kept + n] = new
        self.kept += n

    def gathered(self) -> dict[str, Any]:
        """The draws so far as one tree of arrays with a (chain, draw) lead."""
        if self.store is None:
            return {}
        return jax.tree.map(lambda a: a[:, : self.kept], self.store)


class StopRequest:
    """Set by Ctrl-C within :func:`stop_after_chunk`."""

    requested = False


@contextlib.contextmanager
def stop_after_chunk() -> Any:
    """Within this context a first Ctrl-C (SIGINT) only sets ``.requested``, so the chunk in
    flight finishes and is kept; a second one raises KeyboardInterrupt at once. Outside the
    main thread, where Python cannot take signals, Ctrl-C is left as it is.

    Example:
        >>> with stop_after_chunk() as stop:
        ...     stop.requested
        False
    """
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def request(signum: int, frame: Any) -> None:
        if stop.requested:
            raise KeyboardInterrupt
        stop.requested = True

    previous = signal.signal(signal.SIGINT, request)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _run_chunks(run: _LongRun, mesh: Any, progress: bool | None) -> tuple[Result, bool]:
    total = run.config.num_samples
    interrupted = False
    with stop_after_chunk() as stop:
        bar = progress_bar(progress, total, run.done, "draw")
        try:
            _chunks_until(run, mesh, bar, stop)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bar.close()
    partial = interrupted or run.done < total
    return _result(run, partial), partial


def _chunks_until(run: _LongRun, mesh: Any, bar: Any, stop: StopRequest) -> None:
    """Draw chunks until the run is complete or a stop is requested."""
    total = run.config.num_samples
    while run.done < total and not stop.requested:
        length = min(run.chunk_size, total - run.done)
        first = jnp.asarray(run.done)
        if length not in run.compiled:
            start = time.perf_counter()
            program = _chunk_program(run.spec, run.target, run.config, mesh, length)
            run.compiled[length] = program.lower(run.carry, run.sample_keys, first).compile()
            run.compile_s += time.perf_counter() - start
        start = time.perf_counter()
        carry, *out = run.compiled[length](run.carry, run.sample_keys, first)
        positions, stats, posterior, (grads, logdensity_evals) = to_host(out)
        run.sample_s += time.perf_counter() - start
        chunk = {"positions": positions, "stats": stats, "posterior": posterior}
        run.add(jax.tree.map(functools.partial(_thinned, run.thin), chunk))
        jax.block_until_ready(carry)
        run.carry, run.done = carry, run.done + length
        run.n_grad += int(grads)
        run.n_logdensity += int(logdensity_evals)
        if run.checkpoint is not None:
            save_checkpoint(run)
        bar.update(length)
        _show_stats(bar, run, chunk["stats"])


def _thinned(thin: int, draws: np.ndarray) -> np.ndarray:
    return draws[:, ::thin]


def _show_stats(bar: Any, run: _LongRun, stats: dict[str, np.ndarray]) -> None:
    shown: dict[str, Any] = {}
    if "acceptance_rate" in stats:
        shown["acceptance"] = f"{float(np.mean(stats['acceptance_rate'])):.2f}"
    if "diverging" in stats:
        shown["divergences"] = run.divergences
    bar.set_postfix(shown, refresh=False)


def _result(run: _LongRun, partial: bool) -> Result:
    from bayeswb.execution.sample import make_result

    if run.kept == 0:
        raise KeyboardInterrupt("interrupted before the first chunk finished: no draws")
    cost = {
        "n_grad_evals": run.n_grad,
        "n_logdensity_evals": run.n_logdensity,
        "compile_s": run.compile_s,
        "sample_s": run.sample_s,
    }
    if run.stream is not None:
        run.stream.finish(
            run_metadata(run.spec.name, run.target.name, run.config.to_dict(), cost, partial)
        )
        result = Result.load(run.stream.path)  # read lazily: memory stays bounded
        if partial:
            # a partial run is resumed by appending to the same file, which HDF5 will not
            # open for writing while this result holds it open for reading
            for group in result.idata.groups():
                getattr(result.idata, group).load().close()
        return result
    gathered = run.gathered()
    warmup = run.warmup
    draws = Draws(
        positions=gathered["positions"],
        stats=gathered["stats"],
        warmup_positions=warmup.get("positions"),
        warmup_stats=warmup.get("stats") or {},
        n_grad_evals=run.n_grad,
        n_logdensity_evals=run.n_logdensity,
    )
    return make_result(
        run.spec,
        run.target,
        run.config,
        draws,
        gathered["posterior"],
        warmup.get("posterior"),
        {"compile_s": run.compile_s, "sample_s": run.sample_s},
        partial=partial,
    )


def sample_in_chunks(
    spec: SamplerSpec,
    target: Target,
    config: SamplerConfig,
    key: Array,
    devices: Any,
    chunk_size: int | None,
    checkpoint: str | None,
    progress: bool | None,
    thin: int,
    stream: str | None = None,
) -> Result:
    """``bw.sample`` for a chunked run (see the module docstring)."""
    chunk_size = config.num_samples if chunk_size is None else chunk_size
    if isinstance(thin, bool) or not isinstance(thin, int) or thin < 1 or chunk_size % thin:
        raise ValueError(f"thin must be a positive integer dividing chunk_size, got {thin!r}")
    mesh = make_chain_mesh(config.num_chains, devices)
    start = time.perf_counter()
    program = _start_program(spec, target, config, mesh).lower(key).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    carry, warmup, warmup_posterior, start_grads, sample_keys = program(key)
    warmup, warmup_posterior, start_grads = to_host((warmup, warmup_posterior, start_grads))
    run = _LongRun(spec, target, config, chunk_size, thin, checkpoint, carry, sample_keys)
    run.compile_s, run.sample_s = compile_s, time.perf_counter() - start
    run.n_grad = int(start_grads)
    run.n_logdensity = 0 if spec.kernel.logdensity_evals else int(start_grads)
    if warmup is not None:
        run.warmup = {"positions": warmup[0], "stats": warmup[1], "posterior": warmup_posterior}
    if stream is not None:
        run.stream = DrawStream(stream, config.num_chains, run.warmup)
    if checkpoint is not None:
        save_checkpoint(run)
    return _run_chunks(run, mesh, progress)[0]


# --------------------------------------------------------------------------- checkpoints


def flat(prefix: str, tree: Any) -> dict[str, np.ndarray]:
    """Leaves of ``tree`` as ``prefix/i`` host arrays (typed PRNG keys as their key data;
    arrays sharded over several processes gathered whole)."""
    out = {}
    for i, leaf in enumerate(jax.tree.leaves(tree)):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        out[f"{prefix}/{i}"] = to_host(leaf)
    return out


def unflat(prefix: str, like: Any, arrays: Any) -> Any:
    """The inverse of :func:`_flat`, checked leaf by leaf against ``like``'s shapes."""
    leaves, treedef = jax.tree.flatten(like)
    restored = []
    for i, leaf in enumerate(leaves):
        name = f"{prefix}/{i}"
        if name not in arrays:
            raise ValueError(f"checkpoint has no {name!r}: it does not match this sampler")
        value = arrays[name]
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            value = jax.random.wrap_key_data(value)
        elif value.shape != leaf.shape or value.dtype != leaf.dtype:
            raise ValueError(
                f"checkpoint's {name!r} is {value.dtype}{list(value.shape)}, the sampler's "
                f"state needs {leaf.dtype}{list(leaf.shape)}: it does not match this run"
            )
        restored.append(jnp.asarray(value))
    if f"{prefix}/{len(leaves)}" in arrays:
        raise ValueError(f"checkpoint's {prefix!r} has more parts than this sampler's state")
    return jax.tree.unflatten(treedef, restored)


def save_checkpoint(run: _LongRun) -> None:
    """Write ``run`` to ``run.checkpoint`` atomically (temporary file, fsync, rename)."""
    meta = {
        "kind": "draws",
        "sampler": run.spec.name,
        "target": run.target.name,
        "dim": run.target.dim,
        "config": run.config.to_dict(),
        "chunk_size": run.chunk_size,
        "thin": run.thin,
        "done": run.done,
        "n_grad": run.n_grad,
        "n_logdensity": run.n_logdensity,
        "has_warmup": bool(run.warmup),
        "stream": None if run.stream is None else run.stream.path,
        "kept": run.kept,
    }
    arrays = flat("carry", run.carry) | flat("sample_keys", run.sample_keys)
    arrays |= flat("warmup", run.warmup) | flat("draws", run.gathered())
    write_checkpoint(run.checkpoint, meta, arrays)


def write_checkpoint(path: str, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Write ``meta`` and ``arrays`` to ``path`` atomically: a temporary file, fsync, rename.

    In a multi-process run every process holds the same gathered arrays and only process 0
    writes (the path should be on a filesystem every process can read, to resume).
    """
    if jax.process_index() == 0:
        _write_atomically(path, meta, arrays)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        # no process goes on (and might read the checkpoint) before it is written
        multihost_utils.sync_global_devices(f"bayeswb checkpoint {path}")


def _write_atomically(path: str, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    header = np.array(json.dumps({"format": CHECKPOINT_FORMAT} | meta))
    arrays = {"bayeswb_checkpoint": header} | arrays
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "wb") as handle:
        np.savez(handle, **arrays)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def read_checkpoint(path: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    try:
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise ValueError(f"{path} is not a readable bayeswb checkpoint ({error})") from None
    if "bayeswb_checkpoint" not in arrays:
        raise ValueError(f"{path} is not a bayeswb checkpoint (no metadata)")
    meta = json.loads(str(arrays["bayeswb_checkpoint"]))
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: checkpoint format {meta.get('format')!r} is not supported")
    return meta, arrays


def resume(
    path: str,
    target: Target | None = None,
    devices: Any = None,
    progress: bool | None = None,
) -> Result:
    """Continue the run saved in checkpoint ``path`` and return its :class:`Result`.

    ``target`` is needed unless the run's target is a registered model with default
    parameters; it must have the checkpoint's name and dimension. The resumed run keeps
    checkpointing to ``path`` and gives the draws an uninterrupted run would have.

    Example:
        >>> import bayeswb as bw, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "run.ckpt")
        >>> r = bw.sample("gaussian", "nuts", num_chains=2, num_samples=40, num_warmup=50,
        ...               chunk_size=20, checkpoint=path)
        >>> bw.resume(path).positions.shape  # complete already: nothing left to draw
        (2, 40, 10)
    """
    meta, arrays = read_checkpoint(path)
    spec = SAMPLERS.get(meta["sampler"])
    if target is None:
        if meta["target"] not in MODELS:
            raise ValueError(f"pass target=: {meta['target']!r} is not a registered model")
        target = build_model(meta["target"])
    if (target.name, target.dim) != (meta["target"], meta["dim"]):
        raise ValueError(
            f"checkpoint is of target {meta['target']!r} (dim {meta['dim']}), "
            f"not {target.name!r} (dim {target.dim}); pass the run's target as target="
        )
    config = spec.make_config(**meta["config"])
    if meta.get("kind") == "runs":
        from bayeswb.execution.run_batches import resume_batches

        return resume_batches(meta, arrays, spec, target, config, path, devices, progress)
    mesh = make_chain_mesh(config.num_chains, devices)
    shapes = jax.eval_shape(_start_program(spec, target, config, mesh), jax.random.key(0))
    carry_like, warmup_like, warmup_posterior_like, _, keys_like = shapes
    run = _LongRun(
        spec,
        target,
        config,
        meta["chunk_size"],
        meta["thin"],
        path,
        carry=unflat("carry", carry_like, arrays),
        sample_keys=unflat("sample_keys", keys_like, arrays),
        done=meta["done"],
        n_grad=meta["n_grad"],
        n_logdensity=meta["n_logdensity"],
    )
    if meta["has_warmup"]:
        like = {"positions": warmup_like[0], "stats": warmup_like[1]}
        like["posterior"] = warmup_posterior_like
        run.warmup = jax.tree.map(np.asarray, unflat("warmup", like, arrays))
    if meta["stream"] is not None:
        run.stream = DrawStream.reopen(meta["stream"], meta["kept"])
        run.kept = meta["kept"]
    elif meta["done"]:
        run.add(_draws_from(arrays, carry_like, spec, target, config, mesh, run))
    return _run_chunks(run, mesh, progress)[0]


def _draws_from(
    arrays: dict[str, np.ndarray],
    carry_like: Any,
    spec: SamplerSpec,
    target: Target,
    config: SamplerConfig,
    mesh: Any,
    run: _LongRun,
) -> dict[str, Any]:
    """The draws saved in a checkpoint, as one chunk, shapes taken from the chunk program."""
    kept = -(-run.done // run.thin)
    out = jax.eval_shape(
        _chunk_program(spec, target, config, mesh, 1),
        carry_like,
        jax.eval_shape(lambda: run.sample_keys),
        jnp.asarray(0),
    )
    _, positions, stats, posterior, _ = out
    like = {"positions": positions, "stats": stats, "posterior": posterior}
    like = jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct((leaf.shape[0], kept) + leaf.shape[2:], leaf.dtype),
        like,
    )
    return jax.tree.map(np.asarray, unflat("draws", like, arrays))
