"""Files the workbench writes: replaced whole or not at all, in folders checked up front.

:func:`atomic_path` is how every file is written: the writer fills a temporary file beside
the target, which is fsynced and renamed over the target only once it is complete, so a
kill (even SIGKILL) mid-write leaves the previous file whole. :func:`writable_file` and
:func:`output_paths` check, before a run starts, that its output files can be written.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import secrets
from collections.abc import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[pathlib.Path]:
    """A temporary path beside ``path`` to write to; on success it is fsynced and renamed
    over ``path``, on an error (or Ctrl-C) it is removed and ``path`` is left as it was.

    The temporary name ends with ``path``'s suffix, so writers that choose a format by
    the suffix (matplotlib, pandas) write the format ``path`` asks for.

    Example:
        >>> import tempfile
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "table.csv"
        >>> with atomic_path(target) as temporary:
        ...     _ = temporary.write_text("a,b\\n")
        >>> target.read_text(), sorted(p.name for p in target.parent.iterdir())
        ('a,b\\n', ['table.csv'])
    """
    target = pathlib.Path(path)
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp{target.suffix}")
    try:
        yield temporary
        _fsync(temporary)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_folder(target.parent)


def _fsync(path: pathlib.Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_folder(folder: pathlib.Path) -> None:
    """Make the rename durable; skipped where folders cannot be opened (Windows)."""
    try:
        _fsync(folder)
    except OSError:
        pass


def writable_file(path: str | os.PathLike[str], option: str) -> str:
    """``path`` as an absolute path, after checking that a file can be written there: its
    folder exists and is writable, and it is not itself a folder. ``option`` names the
    setting in the error message.

    Example:
        >>> writable_file("/no/such/folder/run.nc", "--out")
        Traceback (most recent call last):
        ...
        ValueError: --out: folder /no/such/folder does not exist (for /no/such/folder/run.nc)
    """
    absolute = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(absolute)
    if not os.path.isdir(folder):
        raise ValueError(f"{option}: folder {folder} does not exist (for {absolute})")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{option}: folder {folder} is not writable (for {absolute})")
    if os.path.isdir(absolute):
        raise ValueError(f"{option}: {absolute} is a folder, not a file")
    return absolute


def output_paths(
    checkpoint: str | os.PathLike[str] | None, stream: str | os.PathLike[str] | None
) -> tuple[str | None, str | None]:
    """A run's ``checkpoint`` and ``stream`` files, checked by :func:`writable_file` and
    made absolute (so a run resumes from any working directory); they must differ.

    Example:
        >>> output_paths(None, "/tmp/run.nc")
        (None, '/tmp/run.nc')
        >>> output_paths("/tmp/run.nc", "/tmp/../tmp/run.nc")
        Traceback (most recent call last):
        ...
        ValueError: checkpoint and stream are the same file (/tmp/run.nc)...
    """
    checkpoint = None if checkpoint is None else writable_file(checkpoint, "checkpoint")
    stream = None if stream is None else writable_file(stream, "stream")
    if checkpoint is not None and stream is not None and _same_file(checkpoint, stream):
        raise ValueError(
            f"checkpoint and stream are the same file ({checkpoint}); give them different names"
        )
    return checkpoint, stream


def _same_file(first: str, second: str) -> bool:
    return is_same_file(first, second) or os.path.realpath(first) == os.path.realpath(second)


def is_same_file(first: str | os.PathLike[str], second: str | os.PathLike[str]) -> bool:
    """Whether both paths name one existing file (through links or relative parts).

    Example:
        >>> is_same_file("/tmp", "/tmp/../tmp"), is_same_file("/tmp", "/no/such/file")
        (True, False)
    """
    return os.path.exists(first) and os.path.exists(second) and os.path.samefile(first, second)
