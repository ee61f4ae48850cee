"""``bw.sample`` and ``bw.resume``: run any registered sampler on any target, whole or in
pieces, into a :class:`Result`."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from bayeswb.core.config import as_count, config_from_json
from bayeswb.core.files import output_paths
from bayeswb.core.identity import (
    check_same_target,
    checked_fingerprint,
    record_target_identity,
    target_identity,
)
from bayeswb.core.model_data import add_numpyro_groups
from bayeswb.core.provenance import record_manifest, run_manifest
from bayeswb.core.registry import MODELS, build_model
from bayeswb.core.result import Result
from bayeswb.core.sampler import SAMPLERS
from bayeswb.core.target import Target
from bayeswb.core.verdict import UnreliableRunWarning
from bayeswb.execution.checkpoint import read_checkpoint
from bayeswb.execution.draw_chunks import DrawChunks
from bayeswb.execution.driver import checked_devices
from bayeswb.execution.long_run import check_savable, run_pieces
from bayeswb.execution.peak_search import record_density_peak
from bayeswb.execution.run_batches import RunBatches
from bayeswb.execution.whole import sample_whole

Array = jax.Array


def as_key(seed: int | Array) -> Array:
    """A typed PRNG key from an int seed in [0, 2**64), a typed key, or a raw uint32 key.

    An int seed gives the same key in single and double precision: below 2**32 it is
    ``jax.random.key(seed)``; above, its two 32-bit words (which ``jax.random.key`` would
    truncate to the low word without x64, so that seed 2**32 would repeat seed 0).

    Example:
        >>> bool((jax.random.key_data(as_key(2**32)) == jax.random.key_data(as_key(0))).all())
        False
    """
    if isinstance(seed, int | np.integer) and not isinstance(seed, bool):
        seed = int(seed)
        if not 0 <= seed < 2**64:
            raise ValueError(f"seed must be an integer in [0, 2**64), got {seed}")
        if seed < 2**32:
            return jax.random.key(seed)
        words = np.array([seed >> 32, seed & 0xFFFFFFFF], dtype=np.uint32)
        if jax.random.key_data(jax.random.key(0)).shape != words.shape:
            raise ValueError(f"seed must be below 2**32 with this PRNG, got {seed}")
        return jax.random.wrap_key_data(jax.numpy.asarray(words))
    if isinstance(seed, jax.Array):
        if jax.dtypes.issubdtype(seed.dtype, jax.dtypes.prng_key):
            return seed
        if seed.dtype == np.uint32 and seed.shape == (2,):
            return jax.random.wrap_key_data(seed)
    raise ValueError(f"seed must be an int or a jax.random.key, got {seed!r}")


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
    x64: bool | None = None,
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
        x64: run in double (True) or single (False) precision; None follows the
            caller's JAX setting (``jax_enable_x64``, globally or in a
            ``jax.enable_x64`` block). In double precision the draws are float64.
        **options: fields of the sampler's config dataclass; unknown ones are an error.

    Returns:
        Result with ``idata`` (posterior draws shaped (chain, draw, ...)), ``log_z``,
        ``log_z_se``, ``cost`` (gradient and density evaluations, compile and
        sampling seconds) and ``diagnostics``, the verdict on the run. The whole run is one
        compiled XLA program.

    Warns:
        UnreliableRunWarning: once, when the run's verdict (``Result.diagnostics``) failed
            a check, naming the checks and what to try.

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample("funnel", "nuts", seed=1, num_chains=2, num_samples=100,
        ...               num_warmup=100)
        >>> sorted(r.cost)
        ['compile_s', 'n_grad_evals', 'n_logdensity_evals', 'sample_s']
    """
    double = run_precision(x64)
    if isinstance(target, str):
        with jax.enable_x64(double):  # the model's constants in the run's precision
            target = build_model(target)
    if not isinstance(target, Target):
        raise ValueError(f"target must be a bayeswb.Target or a model name, got {target!r}")
    spec = SAMPLERS.get(sampler)
    settings = {"num_chains": num_chains, "num_samples": num_samples, **options}
    if num_warmup is not None:
        settings["num_warmup"] = num_warmup
    config = spec.make_config(**settings)
    checkpoint, stream = output_paths(checkpoint, stream)  # checked before any work
    key = as_key(seed)
    chunk_size = None if chunk_size is None else as_count("chunk_size", chunk_size)
    thin = as_count("thin", thin)
    devices = None if devices is None else checked_devices(devices)
    with jax.enable_x64(double):
        checked_fingerprint(target, jax.random.fold_in(key, 0))
        in_pieces = chunk_size is not None or checkpoint is not None or thin != 1 or stream
        if checkpoint is not None:
            check_savable(config)
        manifest = run_manifest(
            seed if isinstance(seed, int | np.integer) else jax.random.key_data(key).tolist(),
            {"sampler": spec.name, "options": config.to_dict(), "target": target_identity(target)}
            | {"chunk_size": chunk_size, "thin": thin, "checkpoint": checkpoint, "stream": stream}
            | {"devices": None if devices is None else len(devices), "x64": double},
        )
        if not in_pieces:
            result = sample_whole(spec, target, config, key, devices, double)
        elif spec.kernel is None:
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
            size = config.num_chains if chunk_size is None else chunk_size
            run = RunBatches.start(spec, target, config, key, devices, size, checkpoint)
            run.manifest = manifest
            result = run_pieces(run, progress)
        else:
            size = config.num_samples if chunk_size is None else chunk_size
            run = DrawChunks.start(
                spec, target, config, key, devices, size, thin, checkpoint, stream
            )
            run.manifest = manifest
            result = run_pieces(run, progress)
        result = finish(result, target, manifest)
    return warn_if_unreliable(result)


def finish(result: Result, target: Target, manifest: dict[str, Any] | None) -> Result:
    """What every finished run gets: its target's identity (so that a resume or a score
    can refuse another target), its manifest (``Result.manifest``), for a numpyro model
    its plate dimensions, data and log likelihood (:mod:`bayeswb.core.model_data`), and
    the density-peak check's numbers."""
    record_target_identity(result.idata, target)
    record_manifest(result.idata, manifest)
    add_numpyro_groups(result.idata, target)
    return record_density_peak(result, target)


def run_precision(x64: Any) -> bool:
    """Whether a run is in double precision: ``x64`` when it is a bool, else (None) the
    caller's ``jax_enable_x64``, so a user's global setting is respected.

    Example:
        >>> run_precision(None) == jax.config.read("jax_enable_x64"), run_precision(True)
        (True, True)
    """
    if x64 is None:
        return bool(jax.config.read("jax_enable_x64"))
    if not isinstance(x64, bool | np.bool_):
        raise ValueError(f"x64 must be True, False or None (follow jax_enable_x64), got {x64!r}")
    return bool(x64)


def warn_if_unreliable(result: Result) -> Result:
    """Emit one :class:`~bayeswb.core.verdict.UnreliableRunWarning` naming the checks the
    run failed and what to try (see ``Result.diagnostics``); return the run unchanged."""
    verdict = result.diagnostics
    if not verdict.ok:
        message = f"{result.sampler} on {result.target}: {verdict}"
        warnings.warn(message, UnreliableRunWarning, stacklevel=3)
    return result


def resume(
    path: str,
    target: Target | None = None,
    devices: Any = None,
    progress: bool | None = None,
) -> Result:
    """Continue the run saved in checkpoint ``path`` and return its :class:`Result`.

    ``target`` is needed unless the run's target is a registered model (rebuilt with the
    parameters the checkpoint records); a target given must be the checkpoint's own (name,
    dimension, parameters and density are compared). The resumed run keeps
    checkpointing to ``path``, runs in the precision the run started in (``x64``), and
    gives the draws an uninterrupted run would have.

    Example:
        >>> import bayeswb as bw, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "run.ckpt")
        >>> r = bw.sample("gaussian", "nuts", num_chains=2, num_samples=40, num_warmup=50,
        ...               chunk_size=20, checkpoint=path)
        >>> bw.resume(path).positions.shape  # complete already: nothing left to draw
        (2, 40, 10)
    """
    meta, arrays = read_checkpoint(path)
    with jax.enable_x64(meta.get("x64") is True):
        return _resume(meta, arrays, path, target, devices, progress)


def _resume(
    meta: dict[str, Any],
    arrays: dict[str, np.ndarray],
    path: str,
    target: Target | None,
    devices: Any,
    progress: bool | None,
) -> Result:
    """``resume`` in the checkpoint's precision."""
    spec = SAMPLERS.get(meta["sampler"])
    stored = meta.get("target_identity") or {"name": meta["target"], "dim": meta["dim"]}
    if target is None:
        if meta["target"] not in MODELS:
            raise ValueError(f"pass target=: {meta['target']!r} is not a registered model")
        parameters = stored.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise ValueError(f"{path}: the checkpoint's target parameters are damaged")
        target = build_model(meta["target"], **parameters)
    check_same_target(stored, target, "checkpoint")
    config = config_from_json(spec.config_cls, meta["config"])
    strategies: dict[str, Any] = {"draws": DrawChunks, "runs": RunBatches}
    if meta.get("kind") not in strategies:
        raise ValueError(f"{path}: unknown checkpoint kind {meta.get('kind')!r}")
    run = strategies[meta["kind"]].restore(meta, arrays, spec, target, config, path, devices)
    run.manifest = meta.get("manifest")  # the bw.sample call that started the run
    manifest = None if run.manifest is None else {**run.manifest, "resumed_from": path}
    return warn_if_unreliable(finish(run_pieces(run, progress), target, manifest))
