"""The SMC step's parts, one at a time, against exact answers (statistical where they are
random: fixed seeds, bounds from ``helpers``)."""

from __future__ import annotations

import math

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_z_scores

from bayeswb.samplers import smc
from bayeswb.samplers.smc.annealing import cost_per_step, run_cost
from bayeswb.samplers.smc.moves import Move, MoveInfo
from bayeswb.samplers.smc.state import State
from bayeswb.samplers.smc.tempering import adaptive_temperature

N = 64
LOG_RATIO = jax.random.normal(jax.random.key(0), (N,)) * 3.0
UNIFORM = jnp.full(N, -math.log(N))


def _state(log_ratio=LOG_RATIO, log_weights=UNIFORM, temperature=0.2, steps_taken=0):
    zeros = jnp.zeros(log_ratio.shape[0])
    return State(
        jnp.array(steps_taken), zeros[:, None], zeros, log_ratio, log_weights,
        jnp.array(temperature), jnp.array(0.0), jnp.array(0.0), jnp.arange(log_ratio.shape[0]),
    )  # fmt: skip


def _conditional_ess(log_weights, log_ratio, delta):
    """N (sum W w)^2 / sum W w^2 in float64."""
    w, inc = np.exp(np.float64(log_weights)), np.exp(delta * np.float64(log_ratio))
    return len(w) * np.sum(w * inc) ** 2 / np.sum(w * inc**2)


@pytest.mark.parametrize("target", [0.3, 0.5, 0.9])
def test_adaptive_temperature_gives_the_target_conditional_ess(target):
    log_weights = jax.nn.log_softmax(jax.random.normal(jax.random.key(1), (N,)))
    solve = jax.jit(adaptive_temperature, static_argnums=3)
    beta = float(solve(jnp.array(0.2), LOG_RATIO, log_weights, target))
    assert 0.2 < beta < 1.0
    cess = _conditional_ess(log_weights, LOG_RATIO, beta - 0.2)
    np.testing.assert_allclose(cess, target * N, rtol=1e-3)


def test_adaptive_schedule_ends_at_one():
    schedule = jax.jit(smc.adaptive_schedule(0.5, num_steps=10))
    # a constant log ratio keeps every weight equal: straight to beta = 1
    assert float(schedule(_state(log_ratio=jnp.full(N, 2.0)))) == 1.0
    # the last step allowed goes to 1 whatever the ESS
    assert float(schedule(_state(steps_taken=9))) == 1.0
    assert float(schedule(_state(steps_taken=8))) < 1.0
    # no particle alive: to the end (log Z = -inf), not NaN
    assert float(schedule(_state(log_ratio=jnp.full(N, -jnp.inf)))) == 1.0


def test_ladder_and_fixed_schedules():
    ladder = smc.make_schedule("linear", 4, 0.5)
    assert [float(ladder(_state(steps_taken=t))) for t in range(4)] == [0.25, 0.5, 0.75, 1.0]
    geometric = np.asarray(smc.fixed_schedule("geometric", 5))
    np.testing.assert_allclose(geometric[1:], np.logspace(-4, 0, 5), rtol=1e-6)


def test_reweight_log_z_increment_is_log_mean_exp():
    delta = 0.3
    out = smc.reweight(UNIFORM, LOG_RATIO, delta)
    increments = delta * np.float64(LOG_RATIO)
    log_mean_exp = np.log(np.mean(np.exp(increments)))
    np.testing.assert_allclose(float(out.log_z_increment), log_mean_exp, rtol=1e-5)
    expected = increments - np.log(np.sum(np.exp(increments)))
    np.testing.assert_allclose(out.log_weights, expected, rtol=1e-5, atol=1e-5)
    # unequal weights: log sum_i W_i w_i; a dead particle stays dead at delta = 0
    log_w = jnp.log(jnp.array([0.5, 0.25, 0.25]))
    out = smc.reweight(log_w, jnp.array([0.0, math.log(3.0), -jnp.inf]), 1.0)
    assert math.isclose(float(out.log_z_increment), math.log(0.5 + 0.75), rel_tol=1e-6)
    dead = smc.reweight(log_w, jnp.array([0.0, 1.0, -jnp.inf]), 0.0).log_weights
    assert float(dead[2]) == -math.inf and not np.isnan(dead).any()


@pytest.mark.parametrize("scheme", ["systematic", "stratified", "residual"])
def test_resampling_equal_weights_keeps_the_set(scheme):
    positions = jnp.arange(16.0)[:, None]
    resample = jax.jit(smc.ess_resampling(scheme, 1.0))
    out = resample(jax.random.key(2), positions, jnp.full(16, -math.log(16)), jnp.array(15.9))
    assert bool(out.resampled)
    assert sorted(np.asarray(out.positions[:, 0]).tolist()) == list(range(16))
    np.testing.assert_array_equal(out.log_weights, np.full(16, -math.log(16), np.float32))


def test_resampling_only_below_the_ess_threshold():
    resample = jax.jit(smc.ess_resampling("systematic", 0.5))
    log_w = jax.nn.log_softmax(LOG_RATIO)
    positions = jnp.arange(float(N))[:, None]
    kept = resample(jax.random.key(3), positions, log_w, jnp.array(0.5 * N))
    assert not bool(kept.resampled)
    np.testing.assert_array_equal(kept.positions, positions)
    np.testing.assert_array_equal(kept.log_weights, log_w)
    np.testing.assert_array_equal(kept.parents, np.arange(N))
    none = smc.no_resampling(jax.random.key(3), positions, log_w, jnp.array(1.0))
    assert not bool(none.resampled) and none.log_weights is log_w
    np.testing.assert_array_equal(none.parents, np.arange(N))
    # below the threshold every particle is its parent's copy
    drawn = resample(jax.random.key(3), positions, log_w, jnp.array(0.1 * N))
    assert bool(drawn.resampled)
    np.testing.assert_array_equal(drawn.positions[:, 0], positions[drawn.parents, 0])


def test_waste_free_resampling_is_unbiased():
    """M = 4 draws from 8 weighted particles: E[offspring of i] = M W_i (z-scores)."""
    weights = jnp.array([0.3, 0.0, 0.05, 0.15, 0.1, 0.2, 0.1, 0.1])
    resample = smc.waste_free_resampling("multinomial", 4)
    positions = jnp.arange(8.0)[:, None]
    draws = 4000

    def counts(key):
        out = resample(key, positions, jnp.log(weights), jnp.array(1.0))
        return jnp.bincount(out.positions[:, 0].astype(int), length=8)

    c = np.asarray(jax.jit(jax.vmap(counts))(jax.random.split(jax.random.key(4), draws)))
    assert (c.sum(axis=1) == 4).all() and (c[:, 1] == 0).all()
    random = c.std(axis=0) > 0
    z = (c.mean(0) - 4 * np.asarray(weights))[random] / (
        c.std(0, ddof=1)[random] / math.sqrt(draws)
    )
    assert_z_scores(z, "waste-free offspring counts")


def test_covariance_whitening_decorrelates_and_inverts():
    """On 4000 equally weighted draws of a 2-d Gaussian with correlation 0.99 and sds 1
    and 10 (condition number of the correlations 199, 189 after shrinkage, above the
    gate's 100), the whitened draws have correlation 0 and sds 1: the factor is the
    unshrunk covariance's (shrunk by its intensity, 5.1e-4 here, the second whitened sd
    would be 0.976; on the rotated 10-d Gaussian of eigenvalues 1e-6 to 1 the shrunk factor
    left default smc's sds 0.92-0.97 of the true ones, 8 runs, seed 0, where 16 runs at
    seed 4 stayed within the family-wise bound, so no sampler test shows it). Unwhitening
    inverts whitening. At correlation 0.5 (condition number 3) the whitening is the sds.
    With fewer distinct particles than coordinates the unshrunk covariance is singular,
    and the shrunk one's factor is used."""
    key = jax.random.key(0)
    weights = jnp.full(4000, 1 / 4000)
    cov = np.array([[1.0, 0.99 * 10], [0.99 * 10, 100.0]])
    x = jax.random.multivariate_normal(key, jnp.zeros(2), cov, (4000,))
    whitening = smc.covariance_whitening(0, x, weights)
    z = np.asarray(whitening.whiten(x))
    np.testing.assert_allclose(z.std(axis=0), [1.0, 1.0], rtol=1e-3)
    assert abs(np.corrcoef(z.T)[0, 1]) < 1e-3
    np.testing.assert_allclose(whitening.unwhiten(z), x, rtol=1e-4, atol=1e-4)
    cov = np.array([[1.0, 0.5 * 10], [0.5 * 10, 100.0]])
    x = jax.random.multivariate_normal(key, jnp.zeros(2), cov, (4000,))
    scale = np.asarray(smc.covariance_whitening(0, x, weights).scale)
    assert scale[1, 0] == 0.0 and scale[0, 1] == 0.0
    np.testing.assert_allclose(np.diag(scale), np.asarray(x).std(axis=0), rtol=1e-4)
    # precondition="full" whitens by the covariance whatever its condition
    full = smc.adaptive_tuner(2, "full", True, 0.5).whiten(0, x, weights)
    np.testing.assert_allclose(full.scale @ full.scale.T, np.cov(x.T, ddof=0), rtol=1e-4)
    few = jax.random.normal(key, (3, 5))  # 3 distinct particles in 5 coordinates
    singular = smc.adaptive_tuner(5, "full", True, 0.5).whiten(0, few, jnp.full(3, 1 / 3))
    assert np.all(np.isfinite(singular.scale)) and np.all(np.diag(singular.scale) > 0)


def _descendants(key, ancestors, n, dim):
    """n particles, each one of ``ancestors`` independent N(0, I) draws plus a small jitter
    of sd 0.1 of its own: an SMC population whose move could not carry particles between the modes
    their ancestors reached."""
    ancestor_key, choice_key, jitter_key = jax.random.split(key, 3)
    roots = jax.random.normal(ancestor_key, (ancestors, dim))
    parent = jax.random.randint(choice_key, (n,), 0, ancestors)
    return roots[parent] + 0.1 * jax.random.normal(jitter_key, (n, dim))


def test_held_out_whitening_tells_shared_ancestry_from_correlation():
    """Two independent populations of 256, each descended from 4 independent N(0, I_16)
    draws: their correlations are those of 4 draws, so the condition number's gate
    (covariance_whitening) takes the covariance, while held_out_whitening, whose halves do
    not share ancestors, keeps the sds (as on manywell, where 8 of 8 smc_langevin pilots
    did so and the main runs' |delta log Z| fell from 16.1 to 1.9). Two independent halves
    of 256 draws of a Gaussian with correlation 0.95 between coordinates 2k and 2k+1 get
    the pooled covariance's factor."""
    from bayeswb.samplers.smc.tuning import held_out_whitening

    dim, n = 16, 256
    weights = jnp.full(2 * n, 1 / (2 * n))
    keys = jax.random.split(jax.random.key(0), 3)
    shared = jnp.concatenate([_descendants(k, 4, n, dim) for k in keys[:2]])
    assert np.any(np.tril(np.asarray(smc.covariance_whitening(0, shared, weights).scale), -1))
    scale = np.asarray(held_out_whitening(0, shared, weights).scale)
    np.testing.assert_array_equal(scale, np.diag(np.diag(scale)))
    np.testing.assert_allclose(np.diag(scale), np.asarray(shared).std(axis=0), rtol=1e-4)
    block = np.array([[1.0, 0.95], [0.95, 1.0]])
    cov = np.kron(np.eye(dim // 2), block)
    x = jax.random.multivariate_normal(keys[2], jnp.zeros(dim), cov, (2 * n,))
    scale = np.asarray(held_out_whitening(0, x, weights).scale)
    np.testing.assert_allclose(scale @ scale.T, np.cov(np.asarray(x).T, ddof=0), atol=1e-4)


def test_tuning_parts():
    x = jnp.array([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]])
    weights = jnp.array([0.25, 0.5, 0.25])
    mean, sd = smc.adaptive_tuner(2, "diagonal", True, 0.5).whiten(0, x, weights)
    np.testing.assert_allclose(mean, [2.0, 1.0])
    np.testing.assert_allclose(sd, [math.sqrt(2.0), 1.0])  # sd 0 -> 1
    np.testing.assert_array_equal(
        smc.adaptive_tuner(2, False, True, 0.5).whiten(0, x, weights).scale, [1.0, 1.0]
    )
    # the full covariance (the default up to FULL_WHITENING_MAX_DIM coordinates): sd 0 -> 1
    # as above, no correlation with a constant coordinate
    full = smc.adaptive_tuner(2, True, True, 0.5).whiten(0, x, weights)
    np.testing.assert_allclose(full.scale, [[math.sqrt(2.0), 0.0], [0.0, 1.0]], atol=1e-6)
    assert smc.adaptive_tuner(101, True, True, 0.5).whiten(0, jnp.ones((3, 101)), weights)[
        1
    ].shape == (101,)
    update = smc.adaptive_tuner(2, True, True, 0.6).update
    assert math.isclose(float(update(jnp.array(0.0), jnp.array(0.8))), 0.2, rel_tol=1e-6)
    assert float(
        smc.adaptive_tuner(2, True, False, 0.6).update(jnp.array(0.3), 0.8)
    ) == pytest.approx(0.3)
    tuning = smc.Tuning(
        jnp.array([0.5, 1.0]), x[:2], x[1:], jnp.array([2.0, 4.0]), jnp.array([1.0, 3.0])
    )
    replay = smc.replay_tuner(tuning)
    np.testing.assert_array_equal(replay.whiten(1, x, weights).mean, x[1])
    assert math.isclose(float(replay.step_size(1, jnp.array(0.0))), math.log(4.0), rel_tol=1e-6)
    alive = smc.alive_weights(jnp.array([-1.0, -jnp.inf, 3.0, -2.0]))
    np.testing.assert_allclose(alive, [1 / 3, 0, 1 / 3, 1 / 3], rtol=1e-6)


def _stub_move():
    """Deterministic: x -> x + h; NaN where x already exceeds 5; acceptance 0.5, log
    weight increment 1 per step."""

    def step(key, state, logdensity_fn, step_size):
        position = state.position + step_size
        position = jnp.where(state.position > 5.0, jnp.nan, position)
        new = state._replace(position=position, logdensity=logdensity_fn(position))
        return new, MoveInfo(jnp.array(0.5), jnp.array(1.0))

    return Move(blackjax.mcmc.mala.init, step, 0, 0, 1, 1, lambda dim: 1.0, 0.5)


def test_sweeps_trace_retuning_and_rejection():
    mutate = smc.sweeps(_stub_move(), num_sweeps=3)
    z = jnp.array([[0.0], [6.0]])
    update = smc.adaptive_tuner(1, True, True, 0.25).update  # log h += 0.5 * 1 - 0.25
    density = lambda x: -0.5 * x @ x  # noqa: E731
    run = jax.jit(lambda key, z, w: mutate(key, z, density, w, jnp.log(1.0), update))
    out = run(jax.random.key(0), z, jnp.array([1.0, 0.0]))
    h = np.exp([0.0, 0.25, 0.5])
    np.testing.assert_allclose(out.positions[:, 0, 0], np.cumsum(h), rtol=1e-6)
    # the particle beyond 5 is rejected at every sweep: it stays put, weight zero
    np.testing.assert_array_equal(out.positions[:, 1, 0], [6.0, 6.0, 6.0])
    np.testing.assert_array_equal(out.log_increment[:, 0], [1.0, 2.0, 3.0])
    assert (np.asarray(out.log_increment[:, 1]) == -np.inf).all()
    np.testing.assert_allclose(out.acceptance, [0.5, 0.5, 0.5])
    assert math.isclose(float(out.log_step_size), 0.75, rel_tol=1e-6)
    last = smc.keep_last(z, out, jnp.log(jnp.array([0.5, 0.5])))
    np.testing.assert_array_equal(last.z, out.positions[-1])


def _jump_move(target):
    """Deterministic: x -> x + h, or straight to ``target`` if one is given; acceptance 1."""

    def step(key, state, logdensity_fn, step_size):
        position = (
            state.position + step_size if target is None else jnp.full_like(state.position, target)
        )
        new = state._replace(position=position, logdensity=logdensity_fn(position))
        return new, MoveInfo(jnp.array(1.0), jnp.array(0.0))

    return Move(blackjax.mcmc.mala.init, step, 0, 0, 1, 1, lambda dim: 1.0, 1.0)


@pytest.mark.parametrize(
    ("target", "step_size", "expected"),
    [
        (None, 1.0, 2),  # decorrelated at once (jump 1 >= dim 1): the minimum, 2 sweeps
        (None, 0.01, 20),  # jump (k h)^2 grows by more than 10% until k = 22: the cap
        (0.1, 1.0, 2),  # jumps straight to 0.1 and stays: saturated after 2 sweeps
    ],
)
def test_adaptive_sweeps_stopping_rule(target, step_size, expected):
    mutate = smc.adaptive_sweeps(_jump_move(target), max_sweeps=20)
    density = lambda x: -0.5 * x @ x  # noqa: E731
    keep = smc.adaptive_tuner(1, True, False, 0.5).update

    @jax.jit
    def run(z):
        return mutate(jax.random.key(0), z, density, jnp.full(2, 0.5), jnp.log(step_size), keep)

    out = run(jnp.zeros((2, 1)))
    assert int(out.num_sweeps) == expected
    assert out.positions.shape == (1, 2, 1) and float(out.acceptance[0]) == 1.0
    if target is None:
        np.testing.assert_allclose(out.positions[0, :, 0], expected * step_size, rtol=1e-5)


@pytest.mark.parametrize("scale", [1.0, 100.0])
def test_adaptive_sweeps_measure_jumps_against_the_populations_spread(scale):
    """Coordinates the move is not whitened in (``precondition=False``) have any spread;
    "as far as independent draws" is measured against it, so particles ``scale`` times
    wider, moved by steps ``scale`` times longer, take the same sweeps. Two particles at
    +-scale in coordinate 0 and +-2 scale in coordinate 1 (weighted variances scale^2 and
    4 scale^2), steps of 0.2 scale in both: after k sweeps the jumps are (0.2 k)^2 and
    (0.1 k)^2 of the variances, whose sum first reaches dim = 2 at k = 7 (raw jumps,
    2 (0.2 k scale)^2, would stop at 5 sweeps for scale 1 and at the minimum, 2, for
    scale 100)."""
    mutate = smc.adaptive_sweeps(_jump_move(None), max_sweeps=20)
    keep = smc.adaptive_tuner(1, True, False, 0.5).update
    z = scale * jnp.array([[-1.0, -2.0], [1.0, 2.0]])
    density = lambda x: -0.5 * jnp.sum((x / scale) ** 2)  # noqa: E731
    log_step, weights = jnp.log(0.2 * scale), jnp.full(2, 0.5)
    out = jax.jit(lambda z: mutate(jax.random.key(0), z, density, weights, log_step, keep))(z)
    assert int(out.num_sweeps) == 7


def test_adaptive_sweeps_replay_runs_the_pilots_counts():
    counts = jnp.array([3.0, 7.0])
    mutate = smc.adaptive_sweeps(_jump_move(None), max_sweeps=20, replay=counts)
    density = lambda x: -0.5 * x @ x  # noqa: E731
    keep = smc.adaptive_tuner(1, True, False, 0.5).update
    for index, count in enumerate([3, 7]):
        out = mutate(
            jax.random.key(0), jnp.zeros((2, 1)), density, jnp.full(2, 0.5), 0.0, keep,
            index=index,
        )  # fmt: skip
        assert int(out.num_sweeps) == count
        np.testing.assert_allclose(out.positions[0, :, 0], float(count), rtol=1e-6)


def test_waste_free_bookkeeping():
    """M chains of S sweeps keep M (S + 1) equally weighted particles, starts first; the
    main run's sweeps and the step's exact cost follow from N and M."""
    m, s = 4, 3
    chains = smc.Sweeps(
        jnp.arange(s * m * 1.0).reshape(s, m, 1) + 1, jnp.ones((s, m)), jnp.zeros(s), 0.0
    )
    kept = smc.keep_all(jnp.zeros((m, 1)), chains, jnp.full(m, -math.log(m)))
    n = m * (s + 1)
    assert kept.z.shape == (n, 1) and kept.log_weights.shape == (n,)
    np.testing.assert_array_equal(
        kept.z[:, 0], np.concatenate([np.zeros(m), np.arange(1, s * m + 1)])
    )
    np.testing.assert_array_equal(kept.log_increment, np.r_[np.zeros(m), np.ones(s * m)])
    np.testing.assert_allclose(np.exp(kept.log_weights), np.full(n, 1 / n))
    # each kept state belongs to the chain it was drawn in (its family follows the chain's)
    np.testing.assert_array_equal(kept.chain, np.tile(np.arange(m), s + 1))
    last = smc.keep_last(jnp.zeros((m, 1)), chains, jnp.full(m, -math.log(m)))
    np.testing.assert_array_equal(last.chain, np.arange(m))
    mala = smc.mala_move()
    # each of M chains: one init and S steps, one gradient each; log gamma at all N
    assert cost_per_step(mala, 256, 7, 32) == (32 * 8, 32 * 8 + 256)
    assert cost_per_step(smc.rwm_move(), 256, 7, 32) == (0, 32 * 8 + 256)
    # runs of 5 steps and 17 sweeps in all: 5 inits and 17 steps of each of 32 chains
    grads, evals = run_cost(mala, 256, 32, jnp.array(5), jnp.array(17))
    assert (int(grads), int(evals)) == (32 * 22, 32 * 22 + 5 * 256)


def _parts(schedule, tune):
    """smc's parts with random-walk Metropolis (cheap to compile), two sweeps,
    ESS-triggered systematic resampling."""
    return smc.Parts(
        schedule=schedule,
        resample=smc.ess_resampling("systematic", 0.5),
        weigh=smc.normalised_weights,
        tune=tune,
        mutate=smc.sweeps(smc.rwm_move(), num_sweeps=2),
        keep=smc.keep_last,
    )


def test_anneal_when_the_reference_is_the_target_normalised():
    """gamma = Z q: every incremental weight is exp(delta log Z), so every step's log Z
    increment is delta log Z and log Z is exact whatever the particles."""
    log_z_true = 1.7
    q = smc.gaussian_reference(2, 1.5)
    tune = smc.adaptive_tuner(2, True, True, 0.574)
    parts = _parts(smc.make_schedule("linear", 4, 0.5), tune)
    log_density = lambda x: log_z_true + q.log_prob(x)  # noqa: E731
    run = jax.jit(
        lambda key: smc.anneal(key, log_density, q, 32, parts, num_steps=4, step_size=0.5)
    )
    out = run(jax.random.key(0))
    np.testing.assert_allclose(out.path["log_z_increment"], np.full(4, log_z_true / 4), rtol=1e-5)
    assert math.isclose(float(out.log_z), log_z_true, rel_tol=1e-5)
    np.testing.assert_allclose(out.path["ess"], np.full(4, 32.0), rtol=1e-5)
    assert int(out.num_steps_taken) == 4 and not bool(out.path["resampled"].any())


def test_replaying_its_own_tuning_reproduces_a_run():
    """A run without step-size adaptation (step size 1: exp and log are exact) replayed
    with its own Tuning (temperatures, whitening, step sizes) is the same run."""
    q = smc.gaussian_reference(2, 1.0)
    log_density = lambda x: -2.0 * jnp.sum(x**2)  # noqa: E731

    @jax.jit
    def first_and_replay(key):
        adaptive = _parts(smc.adaptive_schedule(0.5, 10), smc.adaptive_tuner(2, True, False, 0.5))
        first = smc.anneal(key, log_density, q, 64, adaptive, num_steps=10, step_size=1.0)
        tuning = first.tuning
        replay = _parts(smc.ladder_schedule(tuning.temperature), smc.replay_tuner(tuning))
        return first, smc.anneal(key, log_density, q, 64, replay, num_steps=10, step_size=1.0)

    first, again = first_and_replay(jax.random.key(1))
    assert 1 < int(first.num_steps_taken) < 10
    np.testing.assert_array_equal(again.positions, first.positions)
    np.testing.assert_array_equal(again.log_z, first.log_z)
    for name in ("temperature", "ess", "acceptance_rate", "step_size", "resampled"):
        np.testing.assert_array_equal(again.path[name], first.path[name])


def test_a_whitened_reference_is_the_gaussian_or_student_t_of_its_factor():
    """``whitened_reference`` with a lower-triangular factor S is ``N(mean, S S^T)`` and,
    with ``dof``, ``t_dof(mean, S S^T)``: log densities equal scipy's, and 100000 draws'
    covariance matches ``S S^T`` (times ``dof / (dof - 2)`` for the t) within the
    family-wise z-bound over its six entries (each entry's standard error estimated from
    the draws' products)."""
    from scipy import stats

    from bayeswb.core.whitening import Whitening

    mean = jnp.array([1.0, -2.0, 0.5])
    factor = jnp.array([[2.0, 0.0, 0.0], [1.5, 0.5, 0.0], [-1.0, 0.3, 0.2]])
    covariance = np.asarray(factor @ factor.T)
    points = jax.random.normal(jax.random.key(1), (5, 3)) * 2.0 + mean
    for dof, exact in [
        (None, stats.multivariate_normal(np.asarray(mean), covariance)),
        (5.0, stats.multivariate_t(np.asarray(mean), covariance, df=5.0)),
    ]:
        q = smc.whitened_reference(Whitening(mean, factor), dof)
        logs = np.asarray(jax.vmap(q.log_prob)(points))
        np.testing.assert_allclose(logs, exact.logpdf(np.asarray(points)), rtol=1e-5)
        draws = np.asarray(q.sample(jax.random.key(2), 100_000), dtype=np.float64)
        centred = draws - np.asarray(mean)
        products = centred[:, :, None] * centred[:, None, :]
        expected = covariance * (1.0 if dof is None else dof / (dof - 2.0))
        se = products.std(axis=0) / math.sqrt(len(draws))
        z = (products.mean(axis=0) - expected) / se
        assert_z_scores(z[np.triu_indices(3)], f"covariance of draws, dof={dof}")
