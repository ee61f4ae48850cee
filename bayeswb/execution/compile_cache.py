"""JAX's persistent compilation cache, on by default in the user's cache folder.

Compiling dominates a small run (a NUTS run on a 10-d funnel compiles for about 9 s and
samples for 1 s). With the cache, a second process running the same job -- the CLI run
again, a notebook after a kernel restart, a new Target object built from the same model
and data -- reads the compiled programs from disk instead of compiling them again. JAX keys
every entry on the program text, the compiler options, the devices and the jax/jaxlib
versions, so a cached program is the program a fresh compilation would give and draws
are unchanged.

Where it lives, in order of precedence:

1. ``bayeswb.set_compile_cache(path)`` at any time (``None`` turns it off);
2. ``BAYESWB_CACHE_DIR`` in the environment when bayeswb's API is first used (``off`` turns
   it off);
3. a cache folder the user already gave JAX (``JAX_COMPILATION_CACHE_DIR`` or
   ``jax.config.update("jax_compilation_cache_dir", ...)``) is kept as it is;
4. otherwise ``bayeswb/jax`` in the platform's cache folder (``$XDG_CACHE_HOME`` or
   ``~/.cache`` on Linux, ``~/Library/Caches`` on macOS, ``%LOCALAPPDATA%`` on Windows).

The folder is created readable by its owner only: a compilation cache holds executable
code, and anyone who can write to it can make this process run theirs (JAX's warning).
Programs that compile in under 0.1 s are not written (JAX's default threshold is 1 s), and
the folder is held under 4 GiB by evicting the least recently used programs; with that
limit JAX also locks the folder (``filelock``), so that two processes never read a program
that the other is half-way through writing. A user's own settings of
``jax_persistent_cache_min_compile_time_secs`` and ``jax_compilation_cache_max_size`` are
kept.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import jax
from jax.experimental.compilation_cache import compilation_cache

ENV_VAR = "BAYESWB_CACHE_DIR"
OFF = ("off", "0", "false", "no", "none")
MIN_COMPILE_SECONDS = 0.1
MAX_BYTES = 4 * 2**30
# JAX's defaults, and the environment variables through which a user overrides them
_JAX_DEFAULTS = {
    "jax_persistent_cache_min_compile_time_secs": (1.0, MIN_COMPILE_SECONDS),
    "jax_compilation_cache_max_size": (-1, MAX_BYTES),
}

logger = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """This platform's per-user cache folder, with ``bayeswb/jax`` appended.

    Example:
        >>> default_cache_dir().parts[-2:]
        ('bayeswb', 'jax')
    """
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    elif sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        base = Path(os.environ["LOCALAPPDATA"])
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "bayeswb" / "jax"


def set_compile_cache(path: str | os.PathLike[str] | None) -> Path | None:
    """Keep JAX's compiled programs in ``path`` (created owner-only if missing), or turn
    the persistent cache off with ``None``. Returns the folder in use.

    This sets JAX's global ``jax_compilation_cache_dir``, so programs of the user's own
    that take long enough to compile are kept there too.

    Example:
        >>> import tempfile, bayeswb as bw
        >>> before = jax.config.jax_compilation_cache_dir
        >>> folder = bw.set_compile_cache(tempfile.mkdtemp())
        >>> jax.config.jax_compilation_cache_dir == str(folder)
        True
        >>> bw.set_compile_cache(None) is None  # off
        True
        >>> _ = bw.set_compile_cache(before)  # back to where it was
    """
    if path is not None:
        folder = Path(path).expanduser().absolute()
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as err:
            raise ValueError(
                f"compile cache: cannot create the folder {str(folder)!r} ({err.strerror}); "
                f"give a writable folder, or None to turn the cache off"
            ) from None
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ValueError(
                f"compile cache: the folder {str(folder)!r} is not writable; give a "
                "writable folder, or None to turn the cache off"
            )
    compilation_cache.reset_cache()  # the next compilation opens the new folder
    jax.config.update("jax_compilation_cache_dir", None if path is None else str(folder))
    if path is None:
        return None
    for name, (jax_default, ours) in _JAX_DEFAULTS.items():
        if jax.config.values[name] == jax_default and name.upper() not in os.environ:
            jax.config.update(name, ours)
    return folder


def enable_by_default() -> Path | None:
    """When bayeswb's API is first used: the cache folder from ``BAYESWB_CACHE_DIR``, the
    user's own JAX setting, or :func:`default_cache_dir` (see the module docstring). A
    folder that cannot be made leaves the cache off, with a log message; nothing is
    raised. JAX's own switch ``jax_enable_compilation_cache=False`` still turns every
    persistent cache off.
    """
    requested = os.environ.get(ENV_VAR)
    if requested is not None and requested.strip().lower() in OFF:
        return None
    users_own = jax.config.values["jax_compilation_cache_dir"]
    if requested is None and users_own:
        return Path(users_own)
    if requested is None or requested.strip().lower() == "default":
        requested = str(default_cache_dir())
    try:
        return set_compile_cache(requested)
    except ValueError as err:
        logger.info("%s; the compilation cache stays off", err)
        return None
