"""Stan's windowed warmup taken one step at a time: the same adaptation as blackjax's."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from blackjax.adaptation.window_adaptation import base, build_schedule

from bayeswb.samplers.stan_windows import StanWindows


@pytest.mark.parametrize("num_steps", [60, 500])
@pytest.mark.parametrize("dense", [False, True])
def test_step_by_step_adaptation_follows_blackjax_window_adaptation(num_steps, dense):
    """Fed the same positions and acceptance rates, every warmup step's step size and
    inverse mass matrix, and the final pair, are blackjax's (up to float32 rounding)."""
    dim = 3
    position_key, rate_key = jax.random.split(jax.random.key(0))
    scales = jnp.array([0.1, 1.0, 10.0])
    positions = scales * jax.random.normal(position_key, (num_steps, dim))
    rates = jax.random.uniform(rate_key, (num_steps,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        bj_init, bj_update, bj_final = base(not dense, target_acceptance_rate=0.8)
    schedule = np.asarray(build_schedule(num_steps))
    windows = StanWindows(num_steps, dense=dense, target_acceptance_rate=0.8)
    ours = windows.init(dim, jnp.asarray(0.5))
    theirs = bj_init(jnp.zeros(dim), 0.5)
    ours_update, their_update = jax.jit(windows.update), jax.jit(bj_update)
    for i in range(num_steps):
        ours = ours_update(ours, jnp.asarray(i), positions[i], rates[i])
        theirs = their_update(theirs, tuple(schedule[i]), positions[i], rates[i])
        np.testing.assert_allclose(ours.step_size, theirs.step_size, rtol=1e-5)
        np.testing.assert_allclose(ours.inverse_mass_matrix, theirs.inverse_mass_matrix, rtol=1e-5)
    for a, b in zip(windows.final(ours), bj_final(theirs), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5)
    # the slow windows did estimate the scales: the last window's variances grow with them
    variances = np.diag(ours.inverse_mass_matrix) if dense else ours.inverse_mass_matrix
    if num_steps == 500:
        assert variances[0] < variances[1] < variances[2]


def test_without_warmup_the_draws_keep_the_initial_step_and_identity():
    windows = StanWindows(0, dense=False, target_acceptance_rate=0.8)
    step_size, inverse_mass_matrix = windows.final(windows.init(2, jnp.asarray(0.3)))
    assert float(step_size) == pytest.approx(0.3)
    np.testing.assert_array_equal(inverse_mass_matrix, np.ones(2))
