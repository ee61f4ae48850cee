"""Draws: what every sampler's ``run`` returns, as a JAX pytree, and the exact cost counts
(:class:`Count`, :func:`exact_count`) it carries."""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


@jax.tree_util.register_pytree_node_class
class Count:
    """An event count that may exceed int32: ``sum_i each_i * sum(events_i)``.

    A compiled program without x64 computes in int32, where a cost such as particles x
    steps x sweeps wraps past ``2**31``. A Count keeps the products out of the program:
    each term is a static Python int ``each`` (from the config: particles moved, leapfrog
    steps per sweep; pytree aux data, never traced) and an integer array ``events``
    computed in the program whose every entry stays small (steps of one run, sweeps of
    one step, leapfrog steps of one draw). :func:`exact_count` forms the total on the host
    in Python ints. A Count returned by a vmapped function (one run per row) counts the
    events of every run: its ``events`` gain the run axis, ``each`` stays; a term built
    from a Python int is ``each = that int`` times an array ``1``, so it is counted once
    per run.

    Example:
        >>> per_run_steps = np.array([40, 40])
        >>> grads = Count.of(per_run_steps, each=1_100_000) + 7
        >>> int(grads), int(grads * 2)
        (88000007, 176000014)
    """

    def __init__(self, terms: Iterable[tuple[int, Any]] = ()) -> None:
        self.terms: tuple[tuple[int, Any], ...] = tuple(terms)

    @classmethod
    def of(cls, events: Count | Array | np.ndarray | Sequence[int] | int, each: int = 1) -> Count:
        """``each`` times the events counted by ``events``: an integer (or boolean) array,
        summed whole; a Python int (static, exact at any size); or a Count."""
        each = operator.index(each)
        if isinstance(events, Count):
            return events * each
        if isinstance(events, int | np.integer) and not isinstance(events, bool):
            events, each = jnp.ones((), dtype=int), each * int(events)
        elif not hasattr(events, "dtype"):
            return cls.of(np.asarray(events), each)
        elif not (
            jnp.issubdtype(events.dtype, jnp.integer) or jnp.issubdtype(events.dtype, jnp.bool_)
        ):
            raise TypeError(f"events must be an integer array, got dtype {events.dtype}")
        return cls(((each, events),) if each else ())

    def __add__(self, other: Count | int) -> Count:
        other = other if isinstance(other, Count) else Count.of(other)
        return Count(self.terms + other.terms)

    __radd__ = __add__

    def __mul__(self, factor: int) -> Count:
        factor = operator.index(factor)
        return Count((each * factor, events) for each, events in self.terms if factor)

    __rmul__ = __mul__

    def __int__(self) -> int:
        return exact_count(self)

    def __repr__(self) -> str:
        terms = ", ".join(f"{each} x {np.shape(events)}" for each, events in self.terms)
        return f"Count({terms})"

    def tree_flatten(self) -> tuple[tuple[Any, ...], tuple[int, ...]]:
        return tuple(events for _, events in self.terms), tuple(e for e, _ in self.terms)

    @classmethod
    def tree_unflatten(cls, each: tuple[int, ...], events: tuple[Any, ...]) -> Count:
        return cls(zip(each, events, strict=True))


def exact_count(count: Count | Array | np.ndarray | int) -> int:
    """The exact total of a cost counter, as a Python int (on the host, after the run).

    ``count`` is a :class:`Count`, a Python int, or an integer array of events whose
    entries are summed (in int64, whatever the array's own type: exact while the total
    stays below ``2**63``).

    Example:
        >>> per_chain = np.full(4, 2**31 - 1, dtype=np.int32)
        >>> exact_count(per_chain), exact_count(Count.of(per_chain, each=10**6) + 5)
        (8589934588, 8589934588000005)
    """
    if isinstance(count, Count):
        return sum(each * exact_count(events) for each, events in count.terms)
    if isinstance(count, int | np.integer) and not isinstance(count, bool):
        return int(count)
    events = np.asarray(count)
    if not (np.issubdtype(events.dtype, np.integer) or events.dtype == np.bool_):
        raise TypeError(f"a count must be an integer array, got dtype {events.dtype}")
    return int(events.sum(dtype=np.int64))


class Draws(NamedTuple):
    """Raw output of ``run(key, target, config)``, all arrays, all in unconstrained space.

    positions:          (chains, draws, dim)
    stats:              dict of (chains, draws) arrays with ArviZ's names (``lp``,
                        ``acceptance_rate``, ``diverging``, ``step_size``, ``n_steps``,
                        ``energy``, ``tree_depth``)
    log_weights:        (chains, draws) unnormalised log importance weights, or None for
                        equally weighted draws
    log_z:              (chains,) one log-evidence estimate per independent run, or None
    log_z_relative_variance: (chains,) each run's own estimate of ``Var(Z_hat) / Z**2``
                        (an SMC run's from its genealogy), or None
    warmup_positions:   (chains, warmup, dim) or None
    warmup_stats:       dict of (chains, warmup) arrays (empty without warmup)
    path_stats:         dict of (chains, steps) arrays describing the run's path rather than
                        its draws (an SMC temperature ladder, ESS per step, a loss curve);
                        lands in the ``path_stats`` group of the InferenceData;
                        those named ``shard_...`` are (chains, shards) arrays, one entry
                        per data shard of a divide-and-conquer run (dims chain/shard), and
                        ``fusion_...`` (chains, fusions), one per fusion (chain/fusion)
    n_grad_evals:       total gradient evaluations of the log density (all chains, warmup
                        included), as the algorithm defines them: a :class:`Count`, or an
                        integer array of events whose entries stay small (never a total
                        formed in the program: int32 wraps); :func:`exact_count` reads it
    n_logdensity_evals: total log-density evaluations (those with a gradient included),
                        as ``n_grad_evals``
    """

    positions: Array
    stats: dict[str, Array]
    log_weights: Array | None = None
    log_z: Array | None = None
    log_z_relative_variance: Array | None = None
    warmup_positions: Array | None = None
    warmup_stats: dict[str, Array] = {}
    path_stats: dict[str, Array] = {}
    n_grad_evals: Count | Array | int = 0
    n_logdensity_evals: Count | Array | int = 0


def chain_draws(
    warmup_trace: tuple[Array, dict[str, Array]] | None,
    sample_trace: tuple[Array, dict[str, Array]],
    n_grad_evals: Count | Array | int,
    n_logdensity_evals: Count | Array | int | None = None,
) -> Draws:
    """Draws of an MCMC run from its ``(positions, stats)`` traces, warmup kept apart.

    ``n_logdensity_evals`` defaults to ``n_grad_evals`` (gradient-based kernels evaluate
    the log density with each gradient).
    """
    positions, stats = sample_trace
    warmup_positions, warmup_stats = warmup_trace if warmup_trace is not None else (None, {})
    return Draws(
        positions=positions,
        stats=stats,
        warmup_positions=warmup_positions,
        warmup_stats=warmup_stats,
        n_grad_evals=n_grad_evals,
        n_logdensity_evals=n_grad_evals if n_logdensity_evals is None else n_logdensity_evals,
    )
