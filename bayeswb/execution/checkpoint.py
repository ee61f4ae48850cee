"""Checkpoint files: a run in pieces, written atomically and read back checked.

A checkpoint is an ``.npz`` archive: JSON metadata (``bayeswb_checkpoint``) and arrays named
``part/i`` (the ``i``-th leaf of a pytree: sampler state, keys, the draws so far). It is
written to a temporary file beside the target, fsynced and renamed over it, so a kill
leaves the previous checkpoint whole. Reading checks every leaf's shape and dtype against
the tree the run expects.
"""

from __future__ import annotations

import json
import zipfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bayeswb.core.files import atomic_path
from bayeswb.execution.driver import to_host

CHECKPOINT_FORMAT = 2  # 2: typed config values (tuples stay tuples)


def flat(prefix: str, tree: Any) -> dict[str, np.ndarray]:
    """Leaves of ``tree`` as ``prefix/i`` host arrays (typed PRNG keys as their key data;
    arrays sharded over several processes gathered whole)."""
    out = {}
    for i, leaf in enumerate(jax.tree.leaves(tree)):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        out[f"{prefix}/{i}"] = to_host(leaf)
    return out


# what a mismatch may mean, beside a checkpoint of another run
OTHER_STATE = "another run's checkpoint, or written by a bayeswb whose sampler state differed"


def unflat(prefix: str, like: Any, arrays: dict[str, np.ndarray]) -> Any:
    """The inverse of :func:`flat`, checked leaf by leaf against ``like``'s shapes."""
    leaves, treedef = jax.tree.flatten(like)
    restored = []
    for i, leaf in enumerate(leaves):
        name = f"{prefix}/{i}"
        if name not in arrays:
            raise ValueError(
                f"checkpoint has no {name!r}: it does not match this sampler ({OTHER_STATE})"
            )
        value = arrays[name]
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            value = jax.random.wrap_key_data(jnp.asarray(value))
        elif value.shape != leaf.shape or value.dtype != leaf.dtype:
            raise ValueError(
                f"checkpoint's {name!r} is {value.dtype}{list(value.shape)}, the sampler's "
                f"state needs {leaf.dtype}{list(leaf.shape)}: it does not match this run "
                f"({OTHER_STATE})"
            )
        restored.append(jnp.asarray(value))
    if f"{prefix}/{len(leaves)}" in arrays:
        raise ValueError(
            f"checkpoint's {prefix!r} has more parts than this sampler's state ({OTHER_STATE})"
        )
    return jax.tree.unflatten(treedef, restored)


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
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        np.savez(handle, allow_pickle=False, **arrays)


def read_checkpoint(path: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(meta, arrays)`` of the checkpoint at ``path``; ValueError if it is not one."""
    try:
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise ValueError(f"{path} is not a readable bayeswb checkpoint ({error})") from None
    if "bayeswb_checkpoint" not in arrays:
        raise ValueError(f"{path} is not a bayeswb checkpoint (no metadata)")
    meta = json.loads(str(arrays.pop("bayeswb_checkpoint")))
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: checkpoint format {meta.get('format')!r} is not supported")
    return meta, arrays
