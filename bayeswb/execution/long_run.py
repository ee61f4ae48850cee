"""Long runs in pieces: ONE loop, two strategies, checkpoints, resume, Ctrl-C, progress.

``bw.sample`` runs here when given ``chunk_size``, ``checkpoint``, ``thin`` or ``stream``.
The run advances one compiled piece at a time, and what a piece is depends on the sampler:

- :class:`~bayeswb.execution.draw_chunks.DrawChunks` (MCMC samplers with a
  :class:`~bayeswb.core.sampler.ChainKernel`): ``chunk_size`` more draws of every chain,
  continued from the chains' carried states; pieces stack along the draw axis.
- :class:`~bayeswb.execution.run_batches.RunBatches` (samplers of independent runs):
  ``chunk_size`` more whole runs; pieces stack along the run (chain) axis.

Both make the draws of a whole run (the key of every draw or run is the one a whole run
gives it). One program is compiled per piece length (the last piece may be shorter).
After each piece the run can be checkpointed (atomically, see
:mod:`bayeswb.execution.checkpoint`) and ``bw.resume`` continues it. A first Ctrl-C lets
the piece in flight finish and returns what was made, marked ``partial``; a progress bar
shows at a terminal.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar, Protocol

import jax
import numpy as np

from bayeswb.core.config import SamplerConfig, config_to_json
from bayeswb.core.draws import Draws
from bayeswb.core.identity import target_identity
from bayeswb.core.progress import progress_bar
from bayeswb.core.result import Result
from bayeswb.core.sampler import SamplerSpec
from bayeswb.core.target import Target
from bayeswb.execution.checkpoint import flat, unflat, write_checkpoint
from bayeswb.execution.streaming import DrawStream

Array = jax.Array


class Strategy(Protocol):
    """How a long run is cut into pieces (see the module docstring)."""

    kind: ClassVar[str]  # names the checkpoint kind: "draws" or "runs"
    unit: ClassVar[str]  # what the progress bar counts
    axis: ClassVar[int]  # the axis along which pieces stack: 1 (draws) or 0 (runs)

    def total(self, config: SamplerConfig) -> int: ...

    def compile(self, run: LongRun, length: int) -> Any: ...

    def advance(self, run: LongRun, program: Any, length: int) -> tuple[Any, int, int]:
        """Run ``program`` on the next ``length`` units: ``(host piece, grads, evals)``."""
        ...

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """What a checkpoint needs besides the stored pieces: (meta, arrays)."""
        ...

    def result(self, run: LongRun, partial: bool) -> Result: ...


class PieceStore:
    """Pieces (host pytrees) stacked along ``axis`` into arrays allocated once for the
    whole run, so storing a piece makes no second copy of what came before.

    Example:
        >>> store = PieceStore(axis=1, total=4)
        >>> store.add({"x": np.zeros((2, 3))}); store.add({"x": np.ones((2, 1))})
        >>> store.kept, store.gathered()["x"].shape
        (4, (2, 4))
    """

    def __init__(self, axis: int, total: int) -> None:
        self.axis, self.total = axis, total
        self.arrays: Any = None
        self.kept = 0

    def add(self, piece: Any) -> None:
        n = jax.tree.leaves(piece)[0].shape[self.axis]
        if self.arrays is None:
            self.arrays = jax.tree.map(self._allocate, piece)
        where = (slice(None),) * self.axis + (slice(self.kept, self.kept + n),)
        for stored, new in zip(jax.tree.leaves(self.arrays), jax.tree.leaves(piece), strict=True):
            stored[where] = new
        self.kept += n

    def restore(self, piece_like: Any, kept: int, arrays: dict[str, np.ndarray]) -> None:
        """Add the ``kept`` units a checkpoint saved, checked leaf by leaf against
        ``piece_like`` (the shapes of one piece; its length along ``axis`` is replaced)."""

        def saved_shape(leaf: Any) -> jax.ShapeDtypeStruct:
            shape = list(leaf.shape)
            shape[self.axis] = kept
            return jax.ShapeDtypeStruct(tuple(shape), leaf.dtype)

        like = jax.tree.map(saved_shape, piece_like)
        self.add(jax.tree.map(np.asarray, unflat("pieces", like, arrays)))

    def _allocate(self, leaf: np.ndarray) -> np.ndarray:
        shape = list(leaf.shape)
        shape[self.axis] = self.total
        return np.empty(shape, leaf.dtype)

    def gathered(self) -> Any:
        """The pieces so far, one tree of arrays (empty dict before the first piece)."""
        if self.arrays is None:
            return {}
        where = (slice(None),) * self.axis + (slice(0, self.kept),)
        return jax.tree.map(lambda a: a[where], self.arrays)


@dataclasses.dataclass
class LongRun:
    """A run in pieces: settings, strategy, the pieces stored so far and the counters."""

    spec: SamplerSpec
    target: Target
    config: SamplerConfig
    strategy: Strategy
    chunk_size: int
    checkpoint: str | None
    store: PieceStore | None  # None: the pieces go to a stream file instead
    stream: DrawStream | None = None
    done: int = 0  # units made (draws per chain before thinning, or runs)
    n_grad: int = 0
    n_logdensity: int = 0
    compile_s: float = 0.0
    sample_s: float = 0.0
    divergences: int = 0
    compiled: dict[int, Any] = dataclasses.field(default_factory=dict)  # by piece length
    manifest: dict[str, Any] | None = None  # of the bw.sample call (provenance.run_manifest)

    @property
    def kept(self) -> int:
        """Units stored so far (after thinning)."""
        holder = self.stream if self.store is None else self.store
        return 0 if holder is None else holder.kept

    def program(self, length: int) -> Any:
        """The compiled program for a piece of ``length`` units (compiled once per length)."""
        if length not in self.compiled:
            start = time.perf_counter()
            self.compiled[length] = self.strategy.compile(self, length)
            self.compile_s += time.perf_counter() - start
        return self.compiled[length]

    def add(self, piece: Any) -> None:
        """Store a finished piece (host arrays)."""
        stats = piece.get("stats", {}) if isinstance(piece, dict) else {}
        if "diverging" in stats:
            self.divergences += int(np.sum(stats["diverging"]))
        if self.stream is not None:
            self.stream.append(piece)
        else:
            assert self.store is not None
            self.store.add(piece)

    def timings(self) -> dict[str, float]:
        return {"compile_s": self.compile_s, "sample_s": self.sample_s}

    def to_result(
        self, draws: Draws, posterior: Any, warmup_posterior: Any, partial: bool
    ) -> Result:
        """The Result of this run's gathered draws (host arrays)."""
        return Result.from_draws(
            draws,
            posterior,
            warmup_posterior,
            sampler=self.spec.name,
            target=self.target.name,
            config=self.config.to_dict(),
            timings=self.timings(),
            partial=partial,
        )


class StopRequest:
    """Set by Ctrl-C within :func:`stop_after_piece`."""

    requested = False


@contextlib.contextmanager
def stop_after_piece() -> Iterator[StopRequest]:
    """Within this context a first Ctrl-C (SIGINT) only sets ``.requested``, so the piece in
    flight finishes and is kept; a second one raises KeyboardInterrupt at once. Outside the
    main thread, where Python cannot take signals, Ctrl-C is left as it is.

    Example:
        >>> with stop_after_piece() as stop:
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


def run_pieces(run: LongRun, progress: bool | None) -> Result:
    """THE loop: advance piece by piece until the run is complete or Ctrl-C asks to stop,
    checkpointing (if asked) at the start and after every piece."""
    total = run.strategy.total(run.config)
    interrupted = False
    with stop_after_piece() as stop:
        bar = progress_bar(progress, total, run.done, run.strategy.unit)
        try:
            if run.checkpoint is not None and run.done == 0:
                save_checkpoint(run)  # the start-up (an MCMC warmup) is not repeated
            while run.done < total and not stop.requested:
                length = min(run.chunk_size, total - run.done)
                program = run.program(length)
                start = time.perf_counter()
                piece, grads, evals = run.strategy.advance(run, program, length)
                run.sample_s += time.perf_counter() - start
                run.add(piece)
                run.done += length
                run.n_grad += grads
                run.n_logdensity += evals
                if run.checkpoint is not None:
                    save_checkpoint(run)
                bar.update(length)
                _show_stats(bar, run, piece)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bar.close()
    if run.kept == 0:
        raise KeyboardInterrupt("interrupted before the first piece of the run finished")
    return run.strategy.result(run, interrupted or run.done < total)


def _show_stats(bar: Any, run: LongRun, piece: Any) -> None:
    stats = piece.get("stats", {}) if isinstance(piece, dict) else {}
    shown: dict[str, Any] = {}
    if "acceptance_rate" in stats:
        shown["acceptance"] = f"{float(np.mean(stats['acceptance_rate'])):.2f}"
    if "diverging" in stats:
        shown["divergences"] = run.divergences
    bar.set_postfix(shown)  # drawn now: the last piece's stats stay on screen


# --------------------------------------------------------------------------- checkpoints


def check_savable(config: SamplerConfig) -> None:
    """Refuse, before anything is compiled, a config that a checkpoint cannot hold."""
    config_to_json(config)


def save_checkpoint(run: LongRun) -> None:
    """Write ``run`` to ``run.checkpoint`` (see :mod:`bayeswb.execution.checkpoint`)."""
    assert run.checkpoint is not None
    strategy_meta, strategy_arrays = run.strategy.state()
    meta = {
        "kind": run.strategy.kind,
        "sampler": run.spec.name,
        "target": run.target.name,
        "dim": run.target.dim,
        "target_identity": target_identity(run.target),
        "x64": bool(jax.config.read("jax_enable_x64")),
        "config": config_to_json(run.config),
        "chunk_size": run.chunk_size,
        "done": run.done,
        "kept": run.kept,
        "n_grad": run.n_grad,
        "n_logdensity": run.n_logdensity,
        "stream": None if run.stream is None else run.stream.path,
        "stream_id": None if run.stream is None else run.stream.run_id,
        "manifest": run.manifest,
        **strategy_meta,
    }
    pieces = {} if run.store is None else run.store.gathered()
    write_checkpoint(run.checkpoint, meta, strategy_arrays | flat("pieces", pieces))
