"""Where a result or a figure came from: package versions, the git revision of the source
checkout, the platform, and a run's manifest (seed, sampler and options, target and its
parameters, how it was run), stored in its InferenceData so that it survives a save and a
load (``Result.manifest``).
"""

from __future__ import annotations

import datetime
import functools
import importlib.metadata
import json
import pathlib
import platform
import subprocess
from typing import Any

import arviz as az
import numpy as np

# the posterior group attribute that holds a run's manifest (JSON)
MANIFEST_ATTRIBUTE = "bayeswb_manifest"

PACKAGES = (
    "jax",
    "jaxlib",
    "numpyro",
    "blackjax",
    "optax",
    "arviz",
    "flowjax",
    "equinox",
    "numpy",
    "pandas",
    "matplotlib",
    "bayeswb",
)


@functools.cache
def git_revision() -> str | None:
    """The source checkout's commit, ``+dirty`` if tracked files are modified; None when
    bayeswb is not installed from a git checkout (asked once per process)."""
    folder = pathlib.Path(__file__).resolve().parent
    try:
        revision = _git(folder, "rev-parse", "HEAD")
        status = _git(folder, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{revision}+dirty" if status else revision or None


def _git(folder: pathlib.Path, *args: str) -> str:
    out = subprocess.run(
        ["git", *args], cwd=folder, capture_output=True, text=True, timeout=10, check=True
    )
    return out.stdout.strip()


@functools.cache
def versions() -> dict[str, str | None]:
    """Installed versions of :data:`PACKAGES` (None for one that is not installed).

    Example:
        >>> versions()["jax"] is not None
        True
    """
    found: dict[str, str | None] = {}
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


def software() -> dict[str, Any]:
    """Versions, git revision and platform, as a figure or a run records them."""
    return {
        "versions": versions(),
        "git_revision": git_revision(),
        "platform": {"system": platform.platform(), "python": platform.python_version()},
    }


def run_manifest(seed: Any, call: dict[str, Any]) -> dict[str, Any]:
    """A run's manifest: its ``seed`` (an int, or a key's data as a list), the rest of the
    ``call`` that started it (sampler, options, target and its parameters, chunking,
    precision), the software it ran on and when it started (UTC)."""
    manifest = {
        "seed": seed,
        **call,
        **software(),
        "started_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    # as JSON holds it (numpy values as lists, anything else as its repr), so that it is
    # the same dict after a checkpoint, a save and a load
    return json.loads(json.dumps(manifest, default=_jsonable))


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    return repr(value)


def record_manifest(idata: az.InferenceData, manifest: dict[str, Any] | None) -> None:
    """Store ``manifest`` in ``idata``'s posterior attributes (it survives save and load)."""
    if manifest is not None:
        idata.posterior.attrs[MANIFEST_ATTRIBUTE] = json.dumps(manifest, default=_jsonable)


def stored_manifest(idata: az.InferenceData) -> dict[str, Any] | None:
    """The manifest :func:`record_manifest` stored, or None (a result saved before
    manifests, or built by hand)."""
    text = idata.posterior.attrs.get(MANIFEST_ATTRIBUTE) if "posterior" in idata else None
    if text is None:
        return None
    try:
        manifest = json.loads(str(text))
    except ValueError:
        raise ValueError("the result's manifest is damaged (not JSON)") from None
    if not isinstance(manifest, dict):
        raise ValueError("the result's manifest is damaged (not a JSON object)")
    return manifest
