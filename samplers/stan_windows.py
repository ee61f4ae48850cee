"""Stan's windowed warmup of an HMC-family sampler, one transition at a time.

The same adaptation as blackjax's ``window_adaptation`` (Stan Reference Manual, "HMC
algorithm parameters", automatic parameter tuning), written as a state that a chain
carries through its steps, so that warmup and draws are one loop over one kernel:

- the step size by dual averaging (Hoffman and Gelman 2014, eq. 6; blackjax's
  ``dual_averaging_adaptation``, t0=10, gamma=0.05, kappa=0.75) towards a target mean
  acceptance rate, in every warmup step;
- the inverse mass matrix (diagonal or dense) by Welford's estimate of the positions'
  covariance (blackjax's ``mass_matrix_adaptation``, Stan's regularisation) in the slow
  windows of blackjax's ``build_schedule`` (75 fast steps, slow windows of 25, 50, 100, ...
  steps, 50 fast steps; shrunk to 15% / 75% / 10% for warmups under 150 steps). At a slow
  window's end the matrix is replaced by the window's estimate and dual averaging
  restarts from its averaged step;
- after warmup: the averaged step size of the last window, ``exp(log_step_size_avg)``, and
  the last window's matrix.

Example:
    >>> import jax.numpy as jnp
    >>> warmup = StanWindows(num_steps=200, dense=False, target_acceptance_rate=0.8)
    >>> state = warmup.init(dim=2, step_size=jnp.asarray(1.0))
    >>> for step in range(10):  # transitions accepted too rarely: the step shrinks
    ...     state = warmup.update(state, jnp.asarray(step), jnp.zeros(2), jnp.asarray(0.2))
    >>> bool(state.step_size < 0.01)
    True
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.adaptation.mass_matrix import mass_matrix_adaptation
from blackjax.adaptation.step_size import dual_averaging_adaptation

from bayeswb.samplers.langevin.warmup import restarted_dual_averaging, stan_schedule

Array = jax.Array


class WindowState(NamedTuple):
    """A chain's warmup adaptation.

    dual_averaging:      blackjax's dual averaging state (the step size's)
    mass_matrix:         blackjax's Welford state of the current slow window
    step_size:           the step size the next warmup transition uses
    inverse_mass_matrix: the inverse mass matrix the next warmup transition uses
    """

    dual_averaging: Any
    mass_matrix: Any
    step_size: Array
    inverse_mass_matrix: Array


def _select(keep_new: Array, new: Any, old: Any) -> Any:
    return jax.tree.map(lambda a, b: jnp.where(keep_new, a, b), new, old)


class StanWindows:
    """Stan's warmup of ``num_steps`` transitions, as ``init``, ``update`` and ``final``."""

    def __init__(self, num_steps: int, dense: bool, target_acceptance_rate: float) -> None:
        self.num_steps = num_steps
        self.schedule = stan_schedule(num_steps) if num_steps > 0 else np.zeros((1, 2), np.int32)
        self.dual_averaging = dual_averaging_adaptation(target_acceptance_rate)
        self.mass_matrix = mass_matrix_adaptation(is_diagonal_matrix=not dense)

    def init(self, dim: int, step_size: Array) -> WindowState:
        """The state before the first warmup transition (identity mass matrix)."""
        da_init = self.dual_averaging[0]
        mass_matrix = self.mass_matrix[0](dim)
        dual_averaging = jax.tree.map(
            lambda a: jnp.asarray(a, step_size.dtype), da_init(step_size)
        )
        return WindowState(dual_averaging, mass_matrix, step_size, mass_matrix.inverse_mass_matrix)

    def update(
        self, state: WindowState, step: Array, position: Array, acceptance_rate: Array
    ) -> WindowState:
        """The state after warmup transition ``step`` (0-based) moved to ``position`` with
        ``acceptance_rate`` (a non-finite rate counts as 0: it shrinks the step)."""
        da_init, da_update, da_final = self.dual_averaging
        mm_init, mm_update, mm_final = self.mass_matrix
        last = len(self.schedule) - 1
        in_slow_window, window_ends = jnp.asarray(self.schedule)[jnp.minimum(step, last)]
        dual_averaging = da_update(state.dual_averaging, jnp.nan_to_num(acceptance_rate))
        mass_matrix = _select(
            in_slow_window == 1, mm_update(state.mass_matrix, position), state.mass_matrix
        )
        # at a slow window's end: its estimate in use, a fresh window, dual averaging
        # restarted from its averaged step (computed each step, kept where a window ends)
        ended = window_ends == 1
        inverse_mass_matrix = jnp.where(
            ended, mm_final(mass_matrix).inverse_mass_matrix, state.inverse_mass_matrix
        )
        dual_averaging = _select(
            ended, restarted_dual_averaging(da_init, da_final, dual_averaging), dual_averaging
        )
        mass_matrix = _select(ended, mm_init(position.shape[-1]), mass_matrix)
        step_size = jnp.exp(dual_averaging.log_step_size).astype(state.step_size.dtype)
        return WindowState(dual_averaging, mass_matrix, step_size, inverse_mass_matrix)

    def final(self, state: WindowState) -> tuple[Array, Array]:
        """The step size and inverse mass matrix of the draws: the last window's averaged
        step and matrix (the initial ones if there was no warmup)."""
        if self.num_steps == 0:
            return state.step_size, state.inverse_mass_matrix
        step_size = self.dual_averaging[2](state.dual_averaging)
        return step_size.astype(state.step_size.dtype), state.inverse_mass_matrix
