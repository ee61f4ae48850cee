"""Ground truth of the synthetic targets, checked against independent estimates.

For each target with exact answers:

- exact samples agree with the log density: Stein's identities ``E[grad log p] = 0`` and
  ``E[x_i d_i log p] = -1`` (they use only the density's gradient, not the sampler), and for
  the 2-D grid-sampled targets a chi-square test of bin counts against bin probabilities
  integrated from the log density;
- exact samples reproduce the reference moments (mean and variance z-scores);
- log Z agrees with an importance-sampling estimate under a Student-t proposal (heavier
  tails than every target, so the weights have finite variance).

Every statistical assertion uses the family-wise false-alarm rate of tests/helpers.py
(1e-3 per test function, Bonferroni over the z-scores in it); seeds are fixed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import FALSE_ALARM_RATE, assert_z_scores
from scipy import stats

import bayeswb as bw
from bayeswb.models import energies

# (name, params): every target with log_z and sample_exact that these tests cover
EXACT_TARGETS = [
    ("gaussian", {"dim": 6, "condition_number": 20.0}),
    ("gaussian", {"dim": 6, "condition_number": 20.0, "rotation": 1}),
    ("banana", {}),
    ("banana", {"dim": 3, "curvature": 0.1}),
    ("funnel", {"dim": 3}),
    ("gmm25", {}),
    ("gmm40", {}),
    ("manywell", {"dim": 4}),
    ("double_well", {}),
    ("rezende_u1", {}),
    ("rezende_u2", {}),
    ("rezende_u3", {}),
    ("rezende_u4", {}),
]
IDS = [
    f"{name}-{'-'.join(f'{k}={v}' for k, v in params.items())}" for name, params in EXACT_TARGETS
]
NUM_SAMPLES = 50_000


def _exact(name: str, params: dict, seed: int = 0) -> tuple[bw.Target, np.ndarray]:
    target = bw.models.get(name, **params)
    draws = np.asarray(target.sample_exact(jax.random.key(seed), NUM_SAMPLES), np.float64)
    return target, draws


def _mean_z(values: np.ndarray, expected: np.ndarray | float) -> np.ndarray:
    return (values.mean(axis=0) - expected) / (values.std(axis=0) / np.sqrt(len(values)))


@pytest.mark.parametrize("name, params", EXACT_TARGETS, ids=IDS)
def test_exact_samples_satisfy_steins_identities(name, params):
    target, draws = _exact(name, params)
    grads = np.asarray(jax.jit(jax.vmap(jax.grad(target.log_density)))(jnp.asarray(draws)))
    if name == "funnel":
        # E[x_i d_i log p] = -1 needs x_i^2 exp(-v) to have a variance; keep the gradient means
        z = _mean_z(grads, 0.0)
    else:
        z = np.concatenate([_mean_z(grads, 0.0), _mean_z(draws * grads, -1.0)])
    assert_z_scores(z, f"{name} Stein identities")


@pytest.mark.parametrize("name, params", EXACT_TARGETS, ids=IDS)
def test_exact_samples_reproduce_reference_moments(name, params):
    target, draws = _exact(name, params, seed=1)
    mean, sd = target.reference.mean["x"], target.reference.sd["x"]
    z_mean = _mean_z(draws, mean)
    if name == "funnel":
        z_var = _mean_z((draws[:, :1] - mean[:1]) ** 2, sd[:1] ** 2)  # x_i has a heavy tail
    else:
        z_var = _mean_z((draws - mean) ** 2, sd**2)
    assert_z_scores(np.concatenate([z_mean, z_var]), f"{name} moments")


def _t_proposal(target: bw.Target, scale: float = 1.5, df: int = 5):
    mean = np.asarray(target.reference.mean["x"])
    shape = np.diag((scale * np.asarray(target.reference.sd["x"])) ** 2)
    return stats.multivariate_t(loc=mean, shape=shape, df=df, seed=2)


@pytest.mark.parametrize(
    "name, params",
    [p for p in EXACT_TARGETS if p[0] != "funnel"],
    ids=[i for i in IDS if "funnel" not in i],
)
def test_log_z_agrees_with_importance_sampling(name, params):
    target = bw.models.get(name, **params)
    proposal = _t_proposal(target)
    x = proposal.rvs(size=100_000)
    log_p = np.asarray(jax.jit(jax.vmap(target.log_density))(jnp.asarray(x, jnp.float32)))
    log_w = log_p.astype(np.float64) - proposal.logpdf(x)
    # Z / exp(log_z) estimated by the mean weight; its z-score against 1
    ratio = np.exp(log_w - target.log_z)
    z = (ratio.mean() - 1.0) / (ratio.std() / np.sqrt(ratio.size))
    assert_z_scores(np.array([z]), f"{name} log Z {target.log_z:.6f} vs importance sampling")


def test_manywell_numbers_from_the_issue():
    truth = energies._double_well_factor_truth()
    assert abs(np.exp(truth["log_z"]) - 11784.509) < 1e-3
    assert abs(bw.models.get("manywell").log_z - 164.6957) < 5e-5
    # the quadrature agrees with scipy's adaptive quadrature
    from scipy.integrate import quad

    z1, error = quad(lambda x: np.exp(energies.double_well_log_factor(x)), -np.inf, np.inf)
    assert abs(truth["log_z"] - np.log(z1)) < 1e-9 + error / z1


@pytest.mark.parametrize("k, z2_scale", [(2, 0.4), (3, 2 * 0.35), (4, 0.4 + 0.35)])
def test_rezende_walled_log_z_has_a_closed_form(k, z2_scale):
    """U2-U4 are Gaussian in z2 at every z1 with a z1-free normaliser (sqrt(2 pi) times 0.4,
    0.35 + 0.35, 0.4 + 0.35), so with the wall the z1 integral is the window length 8 plus two
    half-Gaussians of sd 0.1: log Z = log((8 + 0.1 sqrt(2 pi)) * z2_scale * sqrt(2 pi)).
    An independent check that the quadrature integrates the walled density."""
    root = np.sqrt(2 * np.pi)
    closed_form = np.log(
        (2 * energies.REZENDE_WALL + energies.REZENDE_WALL_WIDTH * root) * z2_scale * root
    )
    assert abs(bw.models.get(f"rezende_u{k}").log_z - closed_form) < 1e-9


def _ks_double_well(draws: np.ndarray) -> float:
    """KS p-value of x1 draws against the CDF of exp(-free energy), by cumulative trapezoid."""
    grid = np.linspace(-6.0, 6.0, 48001)
    density = np.exp(-energies.double_well_free_energy(grid))
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(grid))])
    assert abs(cdf[-1] - 1.0) < 1e-10, "exp(-F) must integrate to one"
    return stats.kstest(draws, lambda x: np.interp(x, grid, cdf)).pvalue


def test_double_well_and_manywell_wells_follow_the_free_energy_profile():
    double_well = bw.models.get("double_well")
    manywell = bw.models.get("manywell", dim=32)
    assert double_well.metadata["free_energy"] is energies.double_well_free_energy
    x_double = np.asarray(double_well.sample_exact(jax.random.key(3), NUM_SAMPLES))[:, 0]
    x_many = np.asarray(manywell.sample_exact(jax.random.key(4), 4000))[:, 0::2]
    p_values = [_ks_double_well(x_double), _ks_double_well(x_many.ravel())]
    # a different well coordinate per column: they are independent draws of the same law
    assert min(p_values) > FALSE_ALARM_RATE / len(p_values), p_values


@pytest.mark.parametrize(
    "name", ["double_well", "rezende_u1", "rezende_u2", "rezende_u3", "rezende_u4"]
)
def test_grid_sampled_targets_pass_a_chi_square_test(name):
    target = bw.models.get(name)
    draws = np.asarray(target.sample_exact(jax.random.key(5), 200_000), np.float64)
    # bin probabilities from the log density itself (midpoint rule on 8 x 8 points per bin)
    edges1, edges2 = np.linspace(-6, 6, 41), np.linspace(-8, 8, 41)
    fine1 = np.linspace(-6, 6, 40 * 8 + 1)[:-1] + 12 / (40 * 8) / 2
    fine2 = np.linspace(-8, 8, 40 * 8 + 1)[:-1] + 16 / (40 * 8) / 2
    grid = jnp.asarray(np.stack(np.meshgrid(fine1, fine2, indexing="ij"), -1).reshape(-1, 2))
    log_p = np.asarray(jax.jit(jax.vmap(target.log_density))(grid), np.float64)
    cell = np.exp(log_p - target.log_z).reshape(40, 8, 40, 8).sum(axis=(1, 3))
    probabilities = cell / cell.sum()
    counts, _, _ = np.histogram2d(draws[:, 0], draws[:, 1], bins=[edges1, edges2])
    expected = probabilities * len(draws)
    keep = expected >= 5
    observed = np.append(counts[keep], counts[~keep].sum())
    expected = np.append(expected[keep], expected[~keep].sum())
    expected *= observed.sum() / expected.sum()
    p_value = stats.chisquare(observed, expected).pvalue
    assert p_value > FALSE_ALARM_RATE, f"{name}: chi-square p = {p_value:.2e}"
