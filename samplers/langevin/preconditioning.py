"""Diagonal preconditioning of Langevin kernels, as a change of variables.

A kernel with preconditioner (inverse mass matrix) ``diag(scale**2)`` on ``log p(x)`` is
the same kernel, unpreconditioned, on the whitened density ``y -> log p(scale * y)`` (the
Jacobian is constant), with ``x = scale * y``. So every Langevin kernel runs, unchanged, on
the whitened density (blackjax's own overdamped-Langevin step and MALA kernel included)
instead of re-deriving preconditioned updates; a state moves between scales without new
gradient evaluations (``grad_y = scale * grad_x``). ``scale=None`` is the identity.

Example:
    >>> import jax.numpy as jnp
    >>> scale = jnp.array([2.0, 0.5])
    >>> logdensity_fn = whitened(lambda x: -0.5 * jnp.sum(x**2), scale)
    >>> float(logdensity_fn(to_whitened(scale, jnp.array([2.0, 1.0]))))
    -2.5
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from bayeswb.core.target import Target

Array = jax.Array


def positive_tuple_or_none(value: Any) -> str | None:
    """None, or a non-empty tuple of positive numbers (hashable, so configs stay keys)."""
    if value is None:
        return None
    if (
        isinstance(value, tuple)
        and value
        and all(not isinstance(v, bool) and isinstance(v, int | float) and v > 0 for v in value)
    ):
        return None
    return "must be None or a non-empty tuple of positive numbers"


def whitened(logdensity_fn: Callable[..., Array], scale: Array | None) -> Callable[..., Array]:
    """``(y, *args) -> logdensity_fn(scale * y, *args)``: the density in coordinates
    ``y = x / scale`` (``scale=None`` is the identity, with no extra arithmetic per
    evaluation); ``args`` are passed on (a minibatch, for the stochastic-gradient
    estimators)."""
    if scale is None:
        return logdensity_fn
    return lambda y, *args: logdensity_fn(scale * y, *args)


def to_position(scale: Array | None, y: Any) -> Any:
    """x from whitened y."""
    return y if scale is None else scale * y


def to_whitened(scale: Array | None, x: Any) -> Any:
    """Whitened y from x."""
    return x if scale is None else x / scale


def initial_scale(target: Target, inverse_mass_matrix: tuple[float, ...] | None) -> Array | None:
    """The fixed diagonal preconditioner as a scale vector (None: identity)."""
    if inverse_mass_matrix is None:
        return None
    if len(inverse_mass_matrix) != target.dim:
        raise ValueError(
            f"inverse_mass_matrix has {len(inverse_mass_matrix)} entries, "
            f"the target has dim {target.dim}"
        )
    return jnp.sqrt(jnp.asarray(inverse_mass_matrix))


def rescale_state(state: Any, old_scale: Array | None, new_scale: Array) -> Any:
    """Move a state with ``position`` and ``logdensity_grad`` fields between whitenings,
    exactly (other fields, a whitened velocity for instance, are kept)."""
    ratio = new_scale if old_scale is None else new_scale / old_scale
    return state._replace(
        position=state.position / ratio, logdensity_grad=state.logdensity_grad * ratio
    )
