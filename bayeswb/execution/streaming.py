"""Streaming a chunked run's draws to a NetCDF file, in the layout ``bw.load`` reads.

With ``bw.sample(..., stream="run.nc")`` no draws stay in memory: each finished chunk is
appended along the (unlimited) ``draw`` dimension of every variable, the file is flushed,
and the returned :class:`~bayeswb.core.result.Result` reads the file lazily (ArviZ's
``from_netcdf``), so host memory is bounded by a chunk, not by the run.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

import h5netcdf
import numpy as np

from bayeswb.core.result import RESULT_ATTRIBUTE, metadata_json

# the InferenceData groups of a run and the part of a chunk each one holds
GROUPS = {
    "posterior": "posterior",
    "unconstrained_posterior": "positions",
    "sample_stats": "stats",
}

# the file attribute that holds the random id of the run a stream belongs to; the run's
# checkpoint records it too, and resume appends only to the file that carries it
STREAM_ATTRIBUTE = "bayeswb_stream"


def _variables(part: str, value: Any) -> dict[str, np.ndarray]:
    return {"position": value} if part == "positions" else dict(value)


def _create(group: Any, name: str, value: np.ndarray, unlimited: bool) -> Any:
    """A (chain, draw, ...) variable named as :func:`bayeswb.core.result.build_idata` names it."""
    extra = tuple(f"{name}_dim_{i}" for i in range(value.ndim - 2))
    for dim, size in zip(extra, value.shape[2:], strict=True):
        group.dimensions[dim] = size
    dtype = np.int8 if value.dtype == np.bool_ else value.dtype
    variable = group.create_variable(name, ("chain", "draw") + extra, dtype=dtype)
    if value.dtype == np.bool_:
        variable.attrs["dtype"] = "bool"  # xarray decodes it back to bool
    if not unlimited:
        variable[...] = value.astype(dtype)
    return variable


class DrawStream:
    """Appends chunks of draws (trees with ``positions``, ``stats``, ``posterior`` of shape
    (chains, n, ...)) to ``path``; ``finish(metadata)`` makes it a loadable result.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "run.nc")
        >>> chunk = {"positions": np.zeros((2, 3, 1)), "stats": {"lp": np.zeros((2, 3))},
        ...          "posterior": {"x": np.zeros((2, 3, 1))}}
        >>> stream = DrawStream(path, num_chains=2)
        >>> stream.append(chunk); stream.append(chunk); stream.kept
        6
    """

    def __init__(self, path: str, num_chains: int, warmup: dict[str, Any] | None = None):
        self.path = path
        self.kept = 0
        self.run_id = secrets.token_hex(16)
        with h5netcdf.File(path, "w") as file:
            file.attrs[STREAM_ATTRIBUTE] = self.run_id
            for group_name in GROUPS:
                group = file.create_group(group_name)
                group.dimensions = {"chain": num_chains, "draw": None}
                group.create_variable("chain", ("chain",), data=np.arange(num_chains))
                group.create_variable("draw", ("draw",), dtype=np.int64)
            for group_name, part in [
                ("warmup_posterior", "posterior"),
                ("warmup_sample_stats", "stats"),
            ]:
                if warmup and warmup.get(part):
                    self._write_whole(file, group_name, dict(warmup[part]))

    @staticmethod
    def _write_whole(file: Any, group_name: str, variables: dict[str, np.ndarray]) -> None:
        group = file.create_group(group_name)
        chains, draws = next(iter(variables.values())).shape[:2]
        group.dimensions = {"chain": chains, "draw": draws}
        group.create_variable("chain", ("chain",), data=np.arange(chains))
        group.create_variable("draw", ("draw",), data=np.arange(draws))
        for name, value in variables.items():
            _create(group, name, np.asarray(value), unlimited=False)

    @classmethod
    def reopen(cls, path: str, kept: int, run_id: str | None) -> DrawStream:
        """Continue the stream of run ``run_id`` after ``kept`` draws per chain (later ones
        are dropped); a file that is not that stream is refused and left untouched."""
        check_stream(path, kept, run_id)
        assert run_id is not None  # check_stream refuses a checkpoint without one
        stream = cls.__new__(cls)
        stream.path, stream.kept, stream.run_id = path, kept, run_id
        with h5netcdf.File(path, "a") as file:
            for group_name in GROUPS:
                if file[group_name].dimensions["draw"].size > kept:
                    file[group_name].resize_dimension("draw", kept)
        return stream

    def append(self, chunk: dict[str, Any]) -> None:
        """Write one chunk's draws after those already in the file, then flush."""
        with h5netcdf.File(self.path, "a") as file:
            for group_name, part in GROUPS.items():
                group = file[group_name]
                for name, value in _variables(part, chunk[part]).items():
                    value = np.asarray(value)
                    if name not in group.variables:
                        _create(group, name, value, unlimited=True)
                    n = value.shape[1]
                    if group.dimensions["draw"].size < self.kept + n:
                        group.resize_dimension("draw", self.kept + n)
                        group["draw"][self.kept : self.kept + n] = np.arange(
                            self.kept, self.kept + n
                        )
                    variable = group[name]
                    variable[:, self.kept : self.kept + n] = value.astype(variable.dtype)
            file.flush()
        self.kept += int(np.shape(chunk["positions"])[1])

    def finish(self, metadata: dict[str, Any]) -> None:
        """Store the run's metadata where :meth:`Result.load` looks for it."""
        with h5netcdf.File(self.path, "a") as file:
            file["posterior"].attrs[RESULT_ATTRIBUTE] = metadata_json(metadata)


def check_stream(path: str, kept: int, run_id: str | None) -> None:
    """Refuse (ValueError) a ``path`` that is not the stream of run ``run_id`` holding at
    least ``kept`` draws per chain: the path comes from a checkpoint file, which is not
    trusted to name a file to write to.

    Example:
        >>> import tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "run.nc")
        >>> stream = DrawStream(path, num_chains=2)
        >>> check_stream(path, 0, stream.run_id)
        >>> check_stream(path, 0, "0123")
        Traceback (most recent call last):
        ...
        ValueError: stream ...run.nc is not this run's stream (it belongs to run ...)
    """
    if run_id is None:
        raise ValueError(f"stream {path}: the checkpoint records no stream id to check it by")
    if not os.path.isfile(path):
        raise ValueError(f"stream {path} does not exist: the checkpoint's stream is needed")
    found, draws = _stream_id_and_draws(path)
    if found is None:
        raise ValueError(f"stream {path} is not a bayeswb stream (no {STREAM_ATTRIBUTE!r} id)")
    if found != run_id:
        raise ValueError(
            f"stream {path} is not this run's stream (it belongs to run {found!r}, "
            f"the checkpoint to run {run_id!r})"
        )
    if draws < kept:
        raise ValueError(
            f"stream {path} holds {draws} draws per chain, the checkpoint {kept}: "
            "it is not the stream this checkpoint was written with"
        )


def _stream_id_and_draws(path: str) -> tuple[str | None, int]:
    """The run id a stream file carries (None if none) and the draws per chain it holds."""
    try:
        with h5netcdf.File(path, "r") as file:
            found = file.attrs.get(STREAM_ATTRIBUTE)
            if found is None:
                return None, 0
            return str(found), min(file[name].dimensions["draw"].size for name in GROUPS)
    except (OSError, KeyError) as error:
        raise ValueError(f"stream {path} is not a readable bayeswb stream ({error})") from None
