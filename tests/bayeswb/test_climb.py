"""The L-BFGS climb behind the Laplace proposal and the density-peak search
(bayeswb/core/climb.py): it finds maxima, counts its evaluations exactly, keeps its best
point where the density has no maximum, and holds one copy of the density's gradient."""

import jax
import jax.numpy as jnp
import numpy as np
from helpers import counted_gaussian

from bayeswb.core.climb import lbfgs_climb


def test_the_climb_reaches_rosenbrocks_maximum():
    rosenbrock = lambda x: -(100.0 * (x[1] - x[0] ** 2) ** 2 + (1.0 - x[0]) ** 2)  # noqa: E731
    climb = lbfgs_climb(rosenbrock, jnp.array([-1.2, 1.0]), 300)
    np.testing.assert_allclose(climb.where, [1.0, 1.0], atol=1e-3)
    assert float(climb.top) > -1e-6


def test_an_ill_conditioned_gaussian_is_climbed_to_its_peak_counting_every_evaluation():
    """Scales 1e-1 to 1e1 (condition number 1e4): the memory's inverse Hessian takes the
    steps that a gradient climb would need thousands of iterations for; each trial point
    is one gradient, as the density's own counter sees."""
    target, counts = counted_gaussian(12, scales=jnp.logspace(-1, 1, 12))
    start = jnp.linspace(-3.0, 3.0, 12)
    climb = jax.jit(lbfgs_climb, static_argnums=(0, 2))(target.log_density, start, 300)
    np.testing.assert_allclose(climb.where, np.zeros(12), atol=1e-2)
    assert -1e-5 < float(climb.top) <= 0.0
    assert int(climb.evaluations) == counts["grad"] < 300 and counts["value"] == 0


def test_a_density_without_a_maximum_gives_the_best_finite_point():
    """log p(x) = x_0 - x_1^2 grows without bound along x_0: the line search doubles
    its steps along it, and the climb returns the highest finite point it evaluated."""
    climb = lbfgs_climb(lambda x: x[0] - x[1] ** 2, jnp.array([0.0, 3.0]), 300)
    assert np.isfinite(climb.where).all() and np.isfinite(float(climb.top))
    assert float(climb.top) > 1e6


def test_the_climbs_program_evaluates_the_density_in_one_place():
    """Each place a loop evaluates the density is a copy of its gradient that XLA
    compiles (optax's lbfgs with zoom line search had three)."""
    traces = []

    def log_density(x):
        traces.append(x)
        return -jnp.sum(x**2)

    jax.jit(lambda x: lbfgs_climb(log_density, x, 100).top).lower(jnp.ones(3))
    assert len(traces) == 1
