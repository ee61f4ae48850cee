"""The one L-BFGS climb of a log density: the Laplace proposal's mode and the verdict's
density-peak search both use it.

Written here rather than taken from optax because of what it compiles to: optax's
``lbfgs`` with its zoom line search evaluates the density at three places in its
program (the first point, the line search's start and its trials), and XLA compiles a
copy of the density's gradient for each. On gp_regression the peak search compiled for
3.0 s, against 1.0 s for a loop with one evaluation. This climb is one ``while_loop``
whose body makes exactly one value-and-gradient evaluation: a trial point of the current
line search, which the body then accepts (a new L-BFGS iteration) or replaces by the
next trial.

- Directions: L-BFGS's two-loop recursion over the last ``MEMORY`` pairs, initial
  inverse Hessian ``gamma I`` with ``gamma = s'y / y'y`` of the newest pair (Nocedal and
  Wright 2006, "Numerical Optimization", Algorithm 7.4 and eq. 7.20); with no pair
  yet, a unit step along the gradient.
- Steps: a weak Wolfe line search by bisection and doubling (Lewis and Overton 2013,
  "Nonsmooth optimization via quasi-Newton methods", section 4.2): a trial failing the
  sufficient-increase condition (Armijo, ``c1 = 1e-4``) or not finite halves the step
  towards the last good one; one whose slope is still steep (curvature, ``c2 = 0.9``)
  doubles it, or bisects once a failing step bounds it. The weak Wolfe conditions keep
  every accepted pair's ``s'y`` positive, so the inverse Hessian stays positive definite.

Where the density has no finite maximum (eight_schools_centered's log density grows
without bound as its scale goes to zero) the iterates wander off; the climb keeps the
highest finite point it has evaluated, so it never returns a point worse than its start.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array

MEMORY = 10
ARMIJO = 1e-4
CURVATURE = 0.9
# a line search that has not met the weak Wolfe conditions after this many trials ends
# the climb (its step then 2^-40 or 2^40 times where it began: nothing left to gain)
LINE_SEARCH_TRIALS = 40
# a climb stops once this many accepted steps in a row have not raised the log density:
# at a float32 optimum the gradient stays above any relative tolerance (gp_regression's
# peak: largest entry 1e-4 to 4e-2) and equal values pass the sufficient-increase test
STALL_ITERATIONS = 10


class Climb(NamedTuple):
    """Where an L-BFGS climb ended: the highest log density it reached (``+inf`` if the
    density was unbounded along the way), where, the gradient of the log density there
    (from the climb's own evaluations), and the exact number of value-and-gradient
    evaluations it made. With ``record_path``, the path: the start and each accepted
    iterate (``path_positions``, ``(max_iterations + 1, d)``, rows past ``path_length``
    zero) and the gradients of the loss, the negative log density, there
    (``path_gradients``); otherwise these are None."""

    top: Array
    where: Array
    gradient: Array
    evaluations: Array
    path_positions: Array | None = None
    path_gradients: Array | None = None
    path_length: Array | None = None


class _Search(NamedTuple):
    """The loop's state: the last accepted point (``value`` and ``grad`` of the loss,
    the negative log density), the line search along ``direction`` (trial ``step``, the
    bracket ``low``..``high``, ``trials`` so far), the pairs of L-BFGS's memory (``rho``
    0 for an empty slot) and the climb's counters."""

    x: Array
    value: Array
    grad: Array
    direction: Array
    step: Array
    low: Array
    high: Array
    trials: Array
    s: Array
    y: Array
    rho: Array
    iteration: Array
    stalled: Array
    best: Climb
    path_x: Array
    path_g: Array


def lbfgs_climb(
    log_density: Callable[[Array], Array],
    x0: Array,
    max_iterations: int,
    tolerance: float = 1e-5,
    record_path: bool = False,
) -> Climb:
    """Climb ``log_density`` from ``x0`` by at most ``max_iterations`` L-BFGS steps.

    Stops when the gradient's largest entry is below ``tolerance * (1 + |log density|)``,
    when a line search fails (``LINE_SEARCH_TRIALS`` trials without a weak Wolfe point),
    when ``STALL_ITERATIONS`` steps in a row have not raised the log density, or after
    ``max_iterations`` steps. Every trial point is one value-and-gradient evaluation,
    counted in ``evaluations`` (the first one is ``x0`` itself). ``record_path`` keeps
    every accepted iterate and its gradient (Pathfinder's path).

    Example:
        >>> climb = lbfgs_climb(lambda x: -0.5 * jnp.sum((x - 3.0) ** 2), jnp.zeros(2), 50)
        >>> abs(float(climb.top)) < 1e-6, [round(float(w), 3) for w in climb.where]
        (True, [3.0, 3.0])
    """
    dtype = x0.dtype
    dim = x0.shape[0]
    value_and_grad = jax.value_and_grad(lambda x: -log_density(x))

    def not_done(search: _Search) -> Array:
        converged = jnp.max(jnp.abs(search.grad)) < tolerance * (1.0 + jnp.abs(search.value))
        return (
            (search.iteration < max_iterations)
            & ~(converged & (search.iteration > 0))
            & (search.trials < LINE_SEARCH_TRIALS)
            & (search.stalled < STALL_ITERATIONS)
        )

    def body(search: _Search) -> _Search:
        first = search.iteration < 0  # the trial is x0: accepted as the start
        trial = search.x + search.step * search.direction
        value, grad = value_and_grad(trial)
        finite = jnp.isfinite(value) & jnp.all(jnp.isfinite(grad))
        best = _keep_higher(search.best, -value, trial, -grad)
        best = best._replace(evaluations=best.evaluations + 1)

        slope = search.grad @ search.direction  # negative: a descent direction of the loss
        sufficient = finite & (value <= search.value + ARMIJO * search.step * slope)
        flat_enough = grad @ search.direction >= CURVATURE * slope
        accept = first | (sufficient & flat_enough)

        # the next trial on this line: bisect after a failure, double until one bounds it
        low = jnp.where(sufficient, search.step, search.low)
        high = jnp.where(sufficient, search.high, search.step)
        next_step = jnp.where(jnp.isinf(high), 2.0 * low, 0.5 * (low + high))
        rejected = search._replace(
            step=next_step, low=low, high=high, trials=search.trials + 1, best=best
        )
        accepted = _accepted(search, trial, value, grad, first, best)
        return jax.tree.map(lambda a, r: jnp.where(accept, a, r), accepted, rejected)

    zero = jnp.zeros((), dtype)
    start = _Search(
        x=x0,
        value=jnp.asarray(jnp.inf, dtype),
        grad=jnp.zeros_like(x0),
        direction=jnp.zeros_like(x0),
        step=zero,
        low=zero,
        high=jnp.asarray(jnp.inf, dtype),
        trials=jnp.asarray(0),
        s=jnp.zeros((MEMORY, dim), dtype),
        y=jnp.zeros((MEMORY, dim), dtype),
        rho=jnp.zeros(MEMORY, dtype),
        iteration=jnp.asarray(-1),
        stalled=jnp.asarray(0),
        best=Climb(jnp.asarray(-jnp.inf, dtype), x0, jnp.zeros_like(x0), jnp.asarray(0)),
        path_x=jnp.zeros((max_iterations + 1 if record_path else 0, dim), dtype),
        path_g=jnp.zeros((max_iterations + 1 if record_path else 0, dim), dtype),
    )
    end = jax.lax.while_loop(not_done, body, start)
    if not record_path:
        return end.best
    return end.best._replace(
        path_positions=end.path_x, path_gradients=end.path_g, path_length=end.iteration + 1
    )


def _keep_higher(best: Climb, top: Array, where: Array, gradient: Array) -> Climb:
    higher = top > best.top  # False for NaN
    pick = lambda new, old: jnp.where(higher, new, old)  # noqa: E731
    return Climb(pick(top, best.top), pick(where, best.where), pick(gradient, best.gradient),
                 best.evaluations)  # fmt: skip


def _accepted(
    search: _Search, x: Array, value: Array, grad: Array, first: Array, best: Climb
) -> _Search:
    """The state after accepting ``x``: its pair ``(s, y)`` pushed into the memory
    (the oldest dropped), the next direction and a new line search."""
    s, y = x - search.x, grad - search.grad
    curvature = s @ y
    keep = ~first & (curvature > 0) & jnp.isfinite(curvature)
    rho = jnp.where(keep, 1.0 / jnp.where(keep, curvature, 1.0), 0.0)
    memory_s = jnp.where(keep, jnp.roll(search.s, 1, axis=0).at[0].set(s), search.s)
    memory_y = jnp.where(keep, jnp.roll(search.y, 1, axis=0).at[0].set(y), search.y)
    memory_rho = jnp.where(keep, jnp.roll(search.rho, 1).at[0].set(rho), search.rho)
    direction = _two_loop(grad, memory_s, memory_y, memory_rho)
    # a direction that does not descend (rounding in a stale memory): restart from the
    # gradient with an empty memory (what _two_loop gives with no pair, without its scans)
    descends = grad @ direction < 0
    memory_rho = jnp.where(descends, memory_rho, 0.0)
    norm = jnp.sqrt(grad @ grad)
    direction = jnp.where(descends, direction, -grad / jnp.where(norm > 0, norm, 1.0))
    raised = best.top > -search.value
    one = jnp.ones((), x.dtype)
    path_x, path_g = search.path_x, search.path_g
    if path_x.shape[0]:  # recording the path: the start is row 0
        path_x = path_x.at[search.iteration + 1].set(x)
        path_g = path_g.at[search.iteration + 1].set(grad)
    return search._replace(
        path_x=path_x, path_g=path_g,
        x=x, value=value, grad=grad, direction=direction,
        step=one, low=jnp.zeros_like(one), high=jnp.full_like(one, jnp.inf),
        trials=jnp.asarray(0), s=memory_s, y=memory_y, rho=memory_rho,
        iteration=search.iteration + 1,
        stalled=jnp.where(raised | first, 0, search.stalled + 1),
        best=best,
    )  # fmt: skip


def _two_loop(grad: Array, s: Array, y: Array, rho: Array) -> Array:
    """L-BFGS's descent direction ``-H grad`` (Nocedal and Wright, Algorithm 7.4), the
    newest pair in row 0; empty slots (``rho = 0``) contribute nothing. With no pair, the
    unit vector along ``-grad``."""

    def newest_first(q: Array, pair: tuple) -> tuple:
        s_i, y_i, rho_i = pair
        alpha = rho_i * (s_i @ q)
        return q - alpha * y_i, alpha

    alphas: Array
    q, alphas = jax.lax.scan(newest_first, grad, (s, y, rho))
    norm = jnp.sqrt(grad @ grad)
    gamma = jnp.where(
        rho[0] > 0, 1.0 / (rho[0] * (y[0] @ y[0])), 1.0 / jnp.where(norm > 0, norm, 1.0)
    )

    def oldest_first(r: Array, pair: tuple) -> tuple:
        s_i, y_i, rho_i, alpha = pair
        return r + s_i * (alpha - rho_i * (y_i @ r)), None

    r, _ = jax.lax.scan(oldest_first, gamma * q, (s, y, rho, alphas), reverse=True)
    return -r
