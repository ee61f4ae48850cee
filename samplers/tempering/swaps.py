"""The communication parts of non-reversible parallel tempering (Syed et al. 2021): the
deterministic even-odd swaps, the index process's round trips, the schedule placed at
equal steps of the estimated communication barrier, and the stepping-stone log Z.

Arrays are indexed by level ``i = 0, ..., K`` (inverse temperature ``beta_i``, increasing,
``beta_0 = 0``, ``beta_K = 1``); ``log_l`` is ``log L = log pi - log pi_0`` of the state
at each level.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array

# a pair never rejects with estimated rate below this floor, so that the estimated barrier
# Lambda(beta) is strictly increasing and has an inverse
MIN_REJECTION = 1e-6


def swap_rejection(betas: Array, log_l: Array) -> Array:
    """``r_i = 1 - min(1, exp((beta_{i+1} - beta_i) (log L(x_i) - log L(x_{i+1}))))``, the
    rejection probability of swapping levels i and i + 1 (Syed et al. 2021, eq. 3), for
    every pair, shape (K,). A NaN log L counts as -inf (a swap into it is rejected).

    Example:
        >>> swap_rejection(jnp.array([0.0, 1.0]), jnp.array([0.0, jnp.log(0.25)])).tolist()
        [0.0]
        >>> swap_rejection(jnp.array([0.0, 1.0]), jnp.array([jnp.log(0.25), 0.0])).tolist()
        [0.75]
    """
    log_l = jnp.where(jnp.isnan(log_l), -jnp.inf, log_l)
    log_ratio = jnp.diff(betas) * (log_l[:-1] - log_l[1:])
    # equal log L at both levels (both -inf included) swaps freely
    log_ratio = jnp.where(log_l[:-1] == log_l[1:], 0.0, log_ratio)
    return 1.0 - jnp.exp(jnp.minimum(log_ratio, 0.0))


def deo_partners(key: Array, round_index: Array, rejection: Array) -> Array:
    """Where each level takes its new state from after one deterministic even-odd round
    (Syed et al. 2021, section 3.3): at even rounds the pairs (0, 1), (2, 3), ... propose
    to swap, at odd rounds (1, 2), (3, 4), ...; each accepts with probability
    ``1 - rejection_i``. Returns ``source`` (K + 1,): level j gets the state of level
    ``source[j]``.

    Example:
        >>> deo_partners(jax.random.key(0), 0, jnp.zeros(3)).tolist()  # even: (0,1), (2,3)
        [1, 0, 3, 2]
        >>> deo_partners(jax.random.key(0), 1, jnp.zeros(3)).tolist()  # odd: (1, 2)
        [0, 2, 1, 3]
    """
    num_pairs = rejection.shape[0]
    pair = jnp.arange(num_pairs)
    proposed = pair % 2 == round_index % 2
    accepted = proposed & (jax.random.uniform(key, (num_pairs,)) >= rejection)
    up = jnp.append(accepted, False)  # level j swaps with j + 1
    down = jnp.insert(accepted, 0, False)  # level j swaps with j - 1
    level = jnp.arange(num_pairs + 1)
    return jnp.where(up, level + 1, jnp.where(down, level - 1, level))


class RoundTrips(NamedTuple):
    """The index process (Syed et al. 2021, section 3.4): each of the K + 1 states carries
    a label; a round trip is a label going from level 0 to level K and back to 0.

    labels: (K + 1,) the label at each level
    phase:  (K + 1,) per label: 0 not yet at level 0, 1 left level 0 (heading up),
            2 reached level K since (heading down)
    total:  () round trips completed
    """

    labels: Array
    phase: Array
    total: Array


def start_round_trips(num_levels: int) -> RoundTrips:
    """Every label at its own level, none yet at level 0 but the one there."""
    labels = jnp.arange(num_levels)
    phase = jnp.zeros(num_levels, dtype=jnp.int32).at[0].set(1)
    return RoundTrips(labels, phase, jnp.zeros((), dtype=jnp.int32))


def follow_swaps(trips: RoundTrips, source: Array) -> RoundTrips:
    """The labels moved by a swap round's ``source``, and the round trips it completes.

    Example (two levels, swapping every round: from the second round on, a label
    returns to level 0 from level 1 at every round):
        >>> trips = start_round_trips(2)
        >>> for _ in range(4):
        ...     trips = follow_swaps(trips, jnp.array([1, 0]))
        >>> int(trips.total)
        3
    """
    labels = trips.labels[source]
    top, bottom = labels[-1], labels[0]
    phase = trips.phase.at[top].set(jnp.where(trips.phase[top] == 1, 2, trips.phase[top]))
    completed = phase[bottom] == 2
    phase = phase.at[bottom].set(1)
    return RoundTrips(labels, phase, trips.total + completed.astype(trips.total.dtype))


def barrier_schedule(betas: Array, mean_rejection: Array) -> Array:
    """The schedule at equal steps of the communication barrier (Syed et al. 2021,
    section 5.1, Algorithm 4): ``Lambda(beta_i) = sum_{j < i} r_j`` estimates the local
    barrier's integral, interpolated linearly between the levels, and the new
    ``beta_k = Lambda^{-1}(k Lambda(1) / K)``. Unchanged if no swap was ever rejected.

    Example (all rejection between the first two levels: every new level lands there):
        >>> new = barrier_schedule(jnp.array([0.0, 0.5, 1.0]), jnp.array([1.0, 0.0]))
        >>> [round(float(beta), 4) for beta in new]
        [0.0, 0.25, 1.0]
    """
    rejection = jnp.maximum(mean_rejection, MIN_REJECTION)
    barrier = jnp.concatenate([jnp.zeros(1, betas.dtype), jnp.cumsum(rejection)])
    levels = jnp.linspace(0.0, 1.0, betas.shape[0], dtype=betas.dtype) * barrier[-1]
    new = jnp.interp(levels, barrier, betas).at[0].set(0.0).at[-1].set(1.0)
    return jnp.where(jnp.all(mean_rejection <= MIN_REJECTION), betas, new)


class SteppingStones(NamedTuple):
    """Running sums of the stepping-stone estimator (Syed et al. 2021, section 5.3):

        log Z = sum_{i < K} log mean_n exp((beta_{i+1} - beta_i) log L(x_{i,n}))

    over the draws ``x_{i,n}`` at level i (a normalised reference, so Z_0 = 1).

    log_sums: (K,) ``log sum_n exp(...)`` per pair;  num_draws: () draws so far
    """

    log_sums: Array
    num_draws: Array


def start_stepping_stones(num_pairs: int, dtype: jnp.dtype) -> SteppingStones:
    return SteppingStones(jnp.full(num_pairs, -jnp.inf, dtype), jnp.zeros((), jnp.int32))


def add_stepping_stones(stones: SteppingStones, betas: Array, log_l: Array) -> SteppingStones:
    """The sums with one more draw at every level (a NaN log L counts as -inf)."""
    log_l = jnp.where(jnp.isnan(log_l), -jnp.inf, log_l)
    terms = jnp.diff(betas) * log_l[:-1]
    terms = jnp.where(jnp.diff(betas) == 0, 0.0, terms)  # 0 * -inf
    return SteppingStones(jnp.logaddexp(stones.log_sums, terms), stones.num_draws + 1)


def stepping_stone_log_z(stones: SteppingStones) -> Array:
    """The log Z estimate of the draws so far.

    Example (log L = log 2 everywhere at two levels: Z = 2):
        >>> s = start_stepping_stones(1, jnp.float32)
        >>> s = add_stepping_stones(s, jnp.array([0.0, 1.0]), jnp.log(jnp.array([2.0, 2.0])))
        >>> round(float(stepping_stone_log_z(s)), 4)
        0.6931
    """
    return jnp.sum(stones.log_sums - jnp.log(stones.num_draws.astype(stones.log_sums.dtype)))
