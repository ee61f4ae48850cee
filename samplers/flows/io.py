"""Saving and loading a trained flow's arrays (``equinox.tree_serialise_leaves``).

The file holds the arrays only, not the architecture: load it into a flow built with the
same architecture (any key). The flow configs' ``flow_path`` option starts from such a file.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import numpy as np


def save_flow(path: str, flow: Any) -> None:
    """Write a flow's arrays with ``equinox.tree_serialise_leaves``.

    The architecture is not stored: load with :func:`load_flow` and a flow built by
    :func:`~.architectures.make_flow` with the same arguments (any key).

    Example:
        >>> import os, tempfile
        >>> import jax.numpy as jnp
        >>> from bayeswb.samplers.flows import make_flow
        >>> flow = make_flow(jax.random.key(0), 2, "maf", num_layers=2)
        >>> path = os.path.join(tempfile.mkdtemp(), "flow.eqx")
        >>> save_flow(path, flow)
        >>> like = make_flow(jax.random.key(5), 2, "maf", num_layers=2)
        >>> x = jnp.ones((1, 2))
        >>> bool(load_flow(path, like).log_prob(x) == flow.log_prob(x))
        True
    """
    eqx.tree_serialise_leaves(path, flow)


def _is_stored(leaf: Any) -> bool:
    # the leaves tree_serialise_leaves writes (arrays and numbers), or their shapes
    return eqx.is_array_like(leaf) or isinstance(leaf, jax.ShapeDtypeStruct)


def load_flow(path: str, like: Any) -> Any:
    """Read a flow written by :func:`save_flow` into the structure of ``like``, a flow
    of the same architecture (built by :func:`~.architectures.make_flow` with any key,
    concrete or inside a traced function; not an ``eval_shape`` skeleton, whose flowjax
    closures hold tracers). The loaded arrays are numpy arrays, so a flow loaded while a
    program is traced becomes a constant of that program."""
    stored, rest = eqx.partition(like, _is_stored, is_leaf=_is_stored)
    skeleton = jax.tree.map(
        lambda leaf: np.zeros(leaf.shape, leaf.dtype) if hasattr(leaf, "shape") else leaf,
        stored,
        is_leaf=_is_stored,
    )
    try:
        loaded = eqx.tree_deserialise_leaves(path, skeleton)
    except OSError:
        raise
    except Exception as error:  # equinox's errors for another architecture or garbage
        raise ValueError(
            f"{path} is not a flow of this architecture saved by save_flow "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
        ) from None
    return eqx.combine(loaded, rest)
