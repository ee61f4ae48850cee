"""Which target a run belongs to: its name, dimension, registry parameters and the
fingerprint of its density, so that a checkpoint is resumed and a result is scored only
against the target it was made on.

The fingerprint is the log density at fixed points (:meth:`Target.check` computes it with
the start-point check, once per target and precision), so it tells apart targets of one
name whose parameters or data differ, registered or not.
"""

from __future__ import annotations

import json
import weakref
from typing import Any

import arviz as az
import jax
import numpy as np

from bayeswb.core.target import Target, same_density

# the attribute of the ``unconstrained_posterior`` group that holds a result's identity
IDENTITY_ATTRIBUTE = "bayeswb_target_identity"

# target -> {double precision?: fingerprint}
_fingerprints: weakref.WeakKeyDictionary[Target, dict[bool, np.ndarray]] = (
    weakref.WeakKeyDictionary()
)


def checked_fingerprint(target: Target, key: jax.Array | None = None) -> np.ndarray:
    """``target.check(key)`` once per target and precision; the target's fingerprint."""
    double = bool(jax.config.read("jax_enable_x64"))
    known = _fingerprints.setdefault(target, {})
    if double not in known:
        known[double] = target.check(jax.random.key(0) if key is None else key)
    return known[double]


def target_identity(target: Target) -> dict[str, Any]:
    """A JSON-able record of ``target``: name, dim, registry parameters, fingerprint.

    Example:
        >>> import bayeswb as bw
        >>> identity = target_identity(bw.models.get("funnel", dim=3, scale=0.5))
        >>> identity["parameters"], len(identity["fingerprint"])
        ({'dim': 3, 'scale': 0.5}, 3)
    """
    return {
        "name": target.name,
        "dim": target.dim,
        "parameters": target.parameters,
        "fingerprint": [float(v) for v in checked_fingerprint(target)],
    }


def check_same_target(stored: dict[str, Any], target: Target, what: str) -> None:
    """Refuse (ValueError) ``target`` if it is not the one ``stored`` records: another name,
    dimension, registry parameters or density. ``what`` names the file in the message.

    Example:
        >>> import bayeswb as bw
        >>> stored = target_identity(bw.models.get("gaussian", dim=3))
        >>> check_same_target(stored, bw.models.get("gaussian", dim=3, condition_number=1e3),
        ...                   "checkpoint")
        Traceback (most recent call last):
        ...
        ValueError: the checkpoint was made on target 'gaussian' with parameters {'dim': 3, ...
    """
    here = target_identity(target)
    same = (stored.get("name"), stored.get("dim")) == (here["name"], here["dim"])
    if same and stored.get("parameters") and here["parameters"]:
        same = stored["parameters"] == here["parameters"]
    if not same:
        raise ValueError(
            f"the {what} was made on target {_describe(stored)}, not on {_describe(here)}: "
            f"pass the {what}'s own target"
        )
    if "fingerprint" in stored and not same_density(stored["fingerprint"], here["fingerprint"]):
        raise ValueError(
            f"the {what} was made on target {_describe(stored)} with another density than "
            f"the target given (their log densities differ at fixed points: "
            f"{np.round(stored['fingerprint'], 4)} and {np.round(here['fingerprint'], 4)}); "
            f"pass the {what}'s own target (its data or parameters differ)"
        )


def _describe(identity: dict[str, Any]) -> str:
    name, parameters = identity.get("name"), identity.get("parameters")
    if parameters:
        return f"{name!r} with parameters {parameters}"
    return f"{name!r} (dim {identity.get('dim')}, a user target)"


def record_target_identity(idata: az.InferenceData, target: Target) -> None:
    """Store ``target_identity(target)`` in ``idata`` (it survives a save and a load)."""
    idata.unconstrained_posterior.attrs[IDENTITY_ATTRIBUTE] = json.dumps(target_identity(target))


def stored_identity(idata: az.InferenceData) -> dict[str, Any] | None:
    """The identity :func:`record_target_identity` stored, or None (an older result)."""
    group = getattr(idata, "unconstrained_posterior", None)
    text = None if group is None else group.attrs.get(IDENTITY_ATTRIBUTE)
    if text is None:
        return None
    try:
        stored = json.loads(str(text))
    except ValueError:
        raise ValueError(f"the result's {IDENTITY_ATTRIBUTE} attribute is damaged") from None
    if not isinstance(stored, dict):
        raise ValueError(f"the result's {IDENTITY_ATTRIBUTE} attribute is damaged")
    return stored
