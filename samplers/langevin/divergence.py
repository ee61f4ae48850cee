"""Non-finite steps of Langevin kernels: rejected (the chain stays put), flagged diverging.

An unadjusted step whose new log density, gradient or position is not finite is rejected
and flagged ``diverging``, so NaN never reaches a later draw; adjusted kernels reject such
steps through their acceptance test.

Example:
    >>> import jax.numpy as jnp
    >>> state, diverging = keep_if_finite(jnp.zeros(2), jnp.array([1.0, jnp.nan]))
    >>> state.tolist(), bool(diverging)
    ([0.0, 0.0], True)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array


def all_finite(*trees: Any) -> Array:
    """True when every leaf of every tree is finite (a scalar boolean)."""
    leaves = [jnp.all(jnp.isfinite(leaf)) for tree in trees for leaf in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves))


def keep_if_finite(old: Any, new: Any) -> tuple[Any, Array]:
    """``(new, False)`` if every leaf of ``new`` is finite, else ``(old, True)``."""
    diverging = ~all_finite(new)
    state = jax.tree.map(lambda o, n: jnp.where(diverging, o, n), old, new)
    return state, diverging
