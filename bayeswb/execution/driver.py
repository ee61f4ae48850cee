"""The shared chain driver: lax.scan over steps, vmap over chains, shard over devices.

Every sampler supplies a per-chain (or per-run) function; the driver splits the key,
vmaps the chains and scans the steps, so there is one compiled program per run and no
Python loop over steps or chains. Given a :class:`ChainLayout` with a mesh (``bw.sample``
makes one whenever more than one device is available), the chain axis is split over the
mesh's devices with ``jax.shard_map``; each chain's key and arithmetic are the same either
way (no computation crosses chains), so the draws depend on the layout only through float
rounding: XLA compiles the chain code for the per-device batch, and rounds a batch of 1
and of 8 chains differently in the last bit (bound: docs/design.md, section 5).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from bayeswb.execution import lapack_order

Array = jax.Array
State = Any
Info = Any


def sample_chain(
    key: Array,
    step_fn: Callable[[Array, State], tuple[State, Info]],
    initial_state: State,
    num_steps: int,
    trace_fn: Callable[[State, Info], Any],
) -> tuple[State, Any]:
    """Run ``num_steps`` transitions of one chain with ``lax.scan``.

    ``step_fn(key, state) -> (state, info)`` is one kernel transition (blackjax's
    pattern); ``trace_fn(state, info)`` picks what to keep per step, so memory is
    bounded by what is traced, not by the full state.

    Returns the final state and the stacked traces, each with a leading ``num_steps`` axis.

    Example:
        >>> import jax.numpy as jnp
        >>> step = lambda k, s: (s + 1.0, None)
        >>> final, trace = sample_chain(jax.random.key(0), step, 0.0, 3, lambda s, i: s)
        >>> trace.tolist()
        [1.0, 2.0, 3.0]
    """

    def one_step(state: State, step_key: Array) -> tuple[State, Any]:
        state, info = step_fn(step_key, state)
        return state, trace_fn(state, info)

    return jax.lax.scan(one_step, initial_state, jax.random.split(key, num_steps))


class ChainLayout(NamedTuple):
    """Where one call's chains sit; every field is explicit, nothing is read from context.

    mesh:  shard the chain axis over this one-axis mesh (``"chain"``), or None to vmap.
    total: the call runs a batch of a larger run of ``total`` independent runs (None: the
           call is the whole run).
    first: index of the batch's first run within the ``total`` (may be traced, so one
           compiled program serves every batch).

    A batch's runs get the keys the whole run would give them, so the batches of a run
    together make the whole run's draws.

    Example:
        >>> key = jax.random.key(0)
        >>> whole = run_chains(key, 4, lambda k: jax.random.normal(k))
        >>> batch_of_two = ChainLayout(total=4, first=2)
        >>> batch = run_chains(key, 2, lambda k: jax.random.normal(k), batch_of_two)
        >>> bool((batch == whole[2:]).all())
        True
    """

    mesh: Mesh | None = None
    total: int | None = None
    first: Any = 0


def make_chain_mesh(num_chains: int, devices: Sequence[Any] | None = None) -> Mesh | None:
    """A one-axis mesh (``"chain"``) over as many devices as evenly divide the chains.

    Uses ``gcd(num_chains, len(devices))`` devices (default: all devices, which after
    ``jax.distributed.initialize`` are those of every process); None when that is one
    device, in which case chains are simply vmapped.

    Example:
        >>> make_chain_mesh(4, jax.local_devices()[:1]) is None
        True
    """
    devices = list(jax.devices() if devices is None else checked_devices(devices))
    if not devices:
        raise ValueError("devices must name at least one device")
    used = math.gcd(num_chains, len(devices))
    if used <= 1:
        return None
    return Mesh(np.array(devices[:used]), ("chain",))


def checked_devices(devices: Any) -> list[Any]:
    """``devices`` as a list of jax devices; anything else is a ValueError saying what is
    accepted.

    Example:
        >>> checked_devices(1)
        Traceback (most recent call last):
        ...
        ValueError: devices must be a list of jax devices (e.g. jax.devices()[:2]), got 1
    """
    if isinstance(devices, jax.Device):
        return [devices]
    listed = list(devices) if isinstance(devices, list | tuple) else None
    if listed is None or not all(isinstance(d, jax.Device) for d in listed):
        raise ValueError(
            f"devices must be a list of jax devices (e.g. jax.devices()[:2]), got {devices!r}"
        )
    return listed


def compile_program(program: Any, *args: Any, kept: float = 1.0) -> Any:
    """Compile ``program`` (a ``jax.jit``-ed function) for ``args`` (arrays or
    ``jax.ShapeDtypeStruct``), refusing one too large for memory (:func:`check_memory`, on
    its outputs before compiling and on XLA's whole estimate after). ``kept``: how many
    times its outputs' size the run keeps on the host (a chunked run keeps every chunk's
    draws, unless it streams them). On the CPU a program with LAPACK calls large enough to
    hang jaxlib is traced again with each chain's calls in order
    (:mod:`bayeswb.execution.lapack_order`).

    Example:
        >>> program = jax.jit(jax.vmap(jax.numpy.linalg.cholesky))
        >>> compile_program(program, jax.numpy.eye(2)[None])(jax.numpy.eye(2)[None]).shape
        (1, 2, 2)
    """
    traced = program.trace(*args)
    if jax.default_backend() == "cpu" and lapack_order.could_split(traced.jaxpr.jaxpr):
        function = program.__wrapped__
        with lapack_order.ordering():
            traced = jax.jit(lambda *a: function(*a)).trace(*args)
    lowered = traced.lower()
    outputs = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(lowered.out_info))
    check_memory(0, outputs, kept)
    compiled = lowered.compile()
    stats = compiled.memory_analysis()
    if stats is not None:
        device = stats.argument_size_in_bytes + stats.temp_size_in_bytes
        check_memory(device, stats.output_size_in_bytes, kept)
    return compiled


# a run's outputs are held on the host up to four times over: as numpy arrays, and as the
# constrained and unconstrained posterior groups of its InferenceData (a weighted run's
# constrained draws twice: its particles and their equal-weight resample)
HOST_COPIES = 4


def check_memory(device_bytes: int, output_bytes: int, kept: float = 1.0) -> None:
    """Refuse a program whose memory need exceeds what is available: ``device_bytes``
    (arguments and XLA's temporary buffers) plus its outputs on the device, and
    :data:`HOST_COPIES` of ``kept`` times its outputs on the host (one memory on the CPU).

    Example:
        >>> check_memory(10**15, 0)
        Traceback (most recent call last):
        ...
        ValueError: this run is too large for memory (needs 1000000.0 GB, ...
    """
    device_need = device_bytes + output_bytes
    host_need = HOST_COPIES * output_bytes * kept
    device_free, host_free = _device_free_bytes(), _host_free_bytes()
    if device_free is None:  # the CPU: device and host memory are one
        device_need, host_need = 0, device_need + host_need
    short = []
    if device_free is not None and device_need > device_free:
        short.append(
            f"on the device needs {device_need / 1e9:.1f} GB, {device_free / 1e9:.1f} free"
        )
    if host_free is not None and host_need > host_free:
        short.append(f"needs {host_need / 1e9:.1f} GB, {host_free / 1e9:.1f} GB available")
    if short:
        raise ValueError(
            f"this run is too large for memory ({'; '.join(short)}): run it in pieces "
            "(chunk_size=; for MCMC also thin= or stream=), or with fewer chains or draws"
        )


def _device_free_bytes() -> int | None:
    """Free memory of this process's first device, where it reports one (GPU, TPU); None on
    CPU. (A device of another process of a multi-host run cannot be asked.)"""
    stats = jax.local_devices()[0].memory_stats()
    if not stats or "bytes_limit" not in stats:
        return None
    return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))


def _host_free_bytes() -> int | None:
    """MemAvailable of /proc/meminfo (Linux); None where it cannot be read."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def to_host(tree: Any) -> Any:
    """``tree``'s arrays as host numpy arrays, gathered from every process of a multi-host
    run (``jax.distributed``) so that each process holds all chains.

    Example:
        >>> to_host({"x": jax.numpy.ones(2)})["x"].tolist()
        [1.0, 1.0]
    """
    from jax.experimental import multihost_utils

    def gather(leaf: Any) -> np.ndarray:
        # a fully addressable array is this process's own (a key, a host value): whole
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
        return np.asarray(leaf)

    return jax.tree.map(gather, tree)


def run_chains(
    key: Array,
    num_chains: int,
    chain_fn: Callable[[Array], Any],
    layout: ChainLayout | None = None,
) -> Any:
    """Run ``chain_fn(key)`` for ``num_chains`` independent keys: vmap, and shard_map over
    the active chain mesh if there is one.

    Each chain's key is ``jax.random.split(key, num_chains)[i]``: the same seed gives the
    same chains whatever the device layout, up to float rounding (see the module
    docstring). Every output leaf has a leading chain axis.
    ``layout`` (default: vmap, whole run) shards the chains over a mesh, or makes them a
    batch of a larger run (see :class:`ChainLayout`).

    Example:
        >>> out = run_chains(jax.random.key(0), 3, lambda k: jax.random.normal(k, (2,)))
        >>> out.shape
        (3, 2)
    """
    layout = layout or ChainLayout()
    if layout.total is None:
        keys = jax.random.split(key, num_chains)
    else:
        keys = jax.random.split(key, layout.total)
        keys = jax.lax.dynamic_slice_in_dim(keys, layout.first, num_chains)
    return map_chains(chain_fn, keys, mesh=layout.mesh)


def map_chains(chain_fn: Callable[..., Any], *per_chain: Any, mesh: Mesh | None = None) -> Any:
    """Apply ``chain_fn`` to each chain's slice of ``per_chain`` (pytrees with a leading
    chain axis): vmap, and shard_map over ``mesh`` if one is given.

    This is how a chunked run continues its chains from their saved states. Inside
    :func:`bayeswb.execution.lapack_order.ordering` (see :func:`compile_program`), the
    LAPACK calls of ``chain_fn`` run one at a time: several at once can hang jaxlib.

    Example:
        >>> map_chains(lambda x, y: x + y, np.arange(3.0), np.ones(3)).tolist()
        [1.0, 2.0, 3.0]
    """
    chain_fn = lapack_order.when_ordering(chain_fn)
    if mesh is None:
        return jax.vmap(chain_fn)(*per_chain)
    spec = PartitionSpec("chain")
    # chains never communicate; check_vma=False lets library kernels (blackjax's) run
    # unchanged inside the map without replication annotations
    sharded = jax.shard_map(
        jax.vmap(chain_fn), mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False
    )
    return sharded(*per_chain)
