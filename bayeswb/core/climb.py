"""The one L-BFGS climb of a log density: the Laplace proposal's mode and the verdict's
density-peak search both use it.

optax's ``lbfgs`` (zoom line search) is a descent method only where the density has a
finite maximum. Where it has none (eight_schools_centered's log density grows without
bound as its scale goes to zero), the iterates wander off, the log density at the last
one may be far below the start, and a float32 run ends in NaN. So the climb keeps the
highest finite point it has seen and stops at the first non-finite step: it never
returns a point worse than its start.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

Array = jax.Array

# a climb stops once this many iterations in a row have not raised the log density: at a
# float32 optimum the gradient stays above any relative tolerance (gp_regression's peak:
# largest entry 1e-4 to 4e-2) and the line search keeps failing, so without this rule
# every climb ran all its iterations, about 19 evaluations each (5,700 per climb)
STALL_ITERATIONS = 10


class Climb(NamedTuple):
    """Where an L-BFGS climb ended: the highest log density it reached (``+inf`` if the
    density was unbounded along the way), where, the gradient of the log density there
    (from the climb's own evaluations), and the exact number of value-and-gradient
    evaluations it made."""

    top: Array
    where: Array
    gradient: Array
    evaluations: Array


def lbfgs_climb(
    log_density: Callable[[Array], Array],
    x0: Array,
    max_iterations: int,
    tolerance: float = 1e-5,
) -> Climb:
    """Climb ``log_density`` from ``x0`` by at most ``max_iterations`` L-BFGS steps.

    Stops when the gradient's largest entry is below ``tolerance * (1 + |log density|)``,
    when a step is not finite (the density blew up), when ``STALL_ITERATIONS`` iterations
    in a row have not raised the log density, or after ``max_iterations``.
    Evaluations: one at the start plus one per line-search step (optax reuses the
    accepted point's value and gradient through ``value_and_grad_from_state``).

    Example:
        >>> climb = lbfgs_climb(lambda x: -0.5 * jnp.sum((x - 3.0) ** 2), jnp.zeros(2), 50)
        >>> abs(float(climb.top)) < 1e-6, [round(float(w), 3) for w in climb.where]
        (True, [3.0, 3.0])
    """

    def loss(x: Array) -> Array:
        return -log_density(x)

    optimiser = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(loss)

    def converged(state: Any) -> Array:
        grad = optax.tree.get(state, "grad")
        value = optax.tree.get(state, "value")
        return jnp.max(jnp.abs(grad)) < tolerance * (1.0 + jnp.abs(value))

    def not_done(carry: tuple) -> Array:
        _, state, iteration, _, finite, stalled = carry
        return (
            (iteration < max_iterations)
            & ~(converged(state) & (iteration > 0))
            & finite
            & (stalled < STALL_ITERATIONS)
        )

    def keep_higher(best: Climb, value: Array, x: Array, grad: Array) -> Climb:
        higher = -value > best.top  # False for NaN
        pick = lambda new, old: jnp.where(higher, new, old)  # noqa: E731
        return best._replace(top=pick(-value, best.top), where=pick(x, best.where),
                             gradient=pick(-grad, best.gradient))  # fmt: skip

    def step(carry: tuple) -> tuple:
        x, state, iteration, best, _, stalled = carry
        value, grad = value_and_grad(x, state=state)
        stalled = jnp.where(-value > best.top, 0, stalled + 1)
        best = keep_higher(best, value, x, grad)
        updates, state = optimiser.update(grad, state, x, value=value, grad=grad, value_fn=loss)
        evaluations = best.evaluations + optax.tree.get(state, "num_linesearch_steps")
        finite = jnp.all(jnp.isfinite(updates))
        x = jnp.where(finite, optax.apply_updates(x, updates), x)
        return x, state, iteration + 1, best._replace(evaluations=evaluations), finite, stalled

    # the first step evaluates x0 (one evaluation), so the climb starts below everything
    lowest = Climb(jnp.asarray(-jnp.inf, x0.dtype), x0, jnp.zeros_like(x0), jnp.asarray(1))
    carry = (x0, optimiser.init(x0), jnp.asarray(0), lowest, jnp.asarray(True), jnp.asarray(0))
    x, state, _, best, finite, _ = jax.lax.while_loop(not_done, step, carry)
    # the last step's point was evaluated by its line search (its value and gradient are
    # in the state); a non-finite last step was not taken
    value = jnp.where(finite, optax.tree.get(state, "value"), jnp.nan)
    return keep_higher(best, value, x, optax.tree.get(state, "grad"))
