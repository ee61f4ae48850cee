"""IWAE-family objectives (models/iwae.py) on vae_digits with one and two stochastic
layers: exact identities between the objectives, the ordering of their expectations (Burda
et al. 2016, Theorem 1) against the exact log p(x) by quadrature, training, and the
gradient SNR trends of Rainforth et al. (2018, Theorem 1)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import vae_log_marginal, z_bound

from bayeswb.models.iwae import (
    Objective,
    batch_loss,
    gradient_draws,
    snr,
    surrogate,
    train,
)
from bayeswb.models.vae_digits import VAEDigits


@pytest.fixture(scope="module")
def small():
    model = VAEDigits(latent_dim=2, hidden=16)
    return model, model.init_params(jax.random.key(0))


@pytest.fixture(scope="module", params=[1, 2], ids=["1 layer", "2 layers"])
def any_layers(request):
    """At initialisation: one stochastic layer of 2 units, or h1 of 2 and h2 of 1 unit."""
    model = VAEDigits(latent_dim=2, hidden=16, layers=request.param, top_dim=1)
    return model, model.init_params(jax.random.key(0))


def values(model, params, objective, x, key, replicates):
    keys = jax.random.split(key, replicates)
    return np.asarray(
        jax.jit(jax.vmap(lambda k: surrogate(model, objective, params, k, x)[1]))(keys),
        dtype=np.float64,
    )


def test_objectives_reduce_to_each_other_exactly(any_layers):
    model, params = any_layers
    x, key = jnp.asarray(model.x_test[0]), jax.random.key(1)
    value = lambda obj: float(jax.jit(lambda p: surrogate(model, obj, p, key, x)[1])(params))
    iwae, elbo = value(Objective("iwae", 7)), value(Objective("elbo", 7))
    assert elbo < iwae  # Jensen, for these 7 unequal weights
    np.testing.assert_allclose(value(Objective("ciwae", 7, beta=0.0)), iwae, rtol=1e-6)
    np.testing.assert_allclose(value(Objective("ciwae", 7, beta=1.0)), elbo, rtol=1e-6)
    np.testing.assert_allclose(value(Objective("miwae", 7, num_groups=1)), iwae, rtol=1e-6)
    # MIWAE(M, 1) draws the same 7 normals as ELBO(7): the same numbers
    np.testing.assert_allclose(value(Objective("miwae", 1, num_groups=7)), elbo, rtol=1e-6)
    # PIWAE's value is its decoder's target IWAE(MK), on the same 7 draws
    np.testing.assert_allclose(value(Objective("piwae", 1, num_groups=7)), iwae, rtol=1e-6)
    with pytest.raises(ValueError, match="num_groups"):
        Objective("iwae", 3, num_groups=2)
    with pytest.raises(ValueError, match="beta"):
        Objective("ciwae", 3, beta=1.5)


def test_piwae_gradient_is_iwae_for_decoder_and_miwae_for_encoder(any_layers):
    model, params = any_layers
    x, key = jnp.asarray(model.x_test[:3]), jax.random.key(2)
    grad = lambda obj: jax.jit(jax.grad(lambda p: batch_loss(model, obj, p, key, x)[0]))(params)
    piwae = grad(Objective("piwae", 4, num_groups=3))
    iwae = grad(Objective("iwae", 12))
    miwae = grad(Objective("miwae", 4, num_groups=3))
    for got, want in ((piwae["decoder"], iwae["decoder"]), (piwae["encoder"], miwae["encoder"])):
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_bounds_ordered_in_expectation_and_below_exact_log_marginal(any_layers):
    """E[elbo] <= E[iwae(k)] nondecreasing in k <= log p(x) (quadrature), each claim
    checked in MCSE units over 2000 independent replicates per k (Bonferroni over all)."""
    model, params = any_layers
    x = jnp.asarray(model.x_test[1])
    exact = vae_log_marginal(model, params["decoder"], x)
    ks = (1, 2, 5, 20, 100)
    draws = [
        values(model, params, Objective("iwae", k), x, jax.random.key(10 + i), 2000)
        for i, k in enumerate(ks)
    ]
    means = np.array([d.mean() for d in draws])
    ses = np.array([d.std(ddof=1) / np.sqrt(len(d)) for d in draws])
    bound = z_bound(2 * len(ks))
    # never significantly decreasing in k, never significantly above log p(x)
    steps = np.diff(means) / np.hypot(ses[1:], ses[:-1])
    assert np.all(steps > -bound), steps
    assert np.all((means - exact) / ses < bound), (means, exact)
    # strictly: the gap from k=1 to k=100 is many standard errors, and k=100 is close
    assert (means[-1] - means[0]) / np.hypot(ses[0], ses[-1]) > bound
    assert exact - means[-1] < 0.2 * (exact - means[0]), (means, exact)


def test_rainforth_objectives_between_elbo_and_iwae_in_expectation(any_layers):
    """Rainforth et al. (2018): E[miwae(M, K)] = E[iwae(K)] (an average of M independent
    IWAE(K) bounds), and E[elbo] <= E[ciwae(beta, MK)] <= E[iwae(MK)], E[ciwae] being
    beta E[elbo] + (1 - beta) E[iwae]; 2000 replicates each, z-scores Bonferroni-bounded."""
    model, params = any_layers
    x = jnp.asarray(model.x_test[2])
    objectives = {
        "elbo": Objective("elbo", 20),
        "iwae4": Objective("iwae", 4),
        "miwae": Objective("miwae", 4, num_groups=5),
        "ciwae": Objective("ciwae", 20, beta=0.5),
        "iwae20": Objective("iwae", 20),
    }
    draws = {
        name: values(model, params, obj, x, jax.random.key(20 + i), 2000)
        for i, (name, obj) in enumerate(objectives.items())
    }
    mean = {name: d.mean() for name, d in draws.items()}
    se = {name: d.std(ddof=1) / np.sqrt(len(d)) for name, d in draws.items()}
    z = lambda a, b: (mean[a] - mean[b]) / np.hypot(se[a], se[b])
    bound = z_bound(4)
    assert abs(z("miwae", "iwae4")) < bound, (mean, se)
    ciwae_expected = 0.5 * (mean["elbo"] + mean["iwae20"])
    ciwae_se = np.sqrt(se["ciwae"] ** 2 + 0.25 * (se["elbo"] ** 2 + se["iwae20"] ** 2))
    assert abs(mean["ciwae"] - ciwae_expected) / ciwae_se < bound, (mean, se)
    # strict orderings: each gap is many standard errors wide at these settings
    assert z("ciwae", "elbo") > bound and z("iwae20", "ciwae") > bound, (mean, se)


@pytest.fixture(scope="module")
def trained(small):
    model, params = small
    return train(jax.random.key(3), model, Objective("iwae", 5), 300, params=params, batch_size=50)


def test_training_raises_held_out_likelihood(small, trained):
    """300 IWAE(5) steps: the paired held-out gain (k = 200 estimates) is significant."""
    model, params = small
    trained, trace = trained
    assert trace["bound"].shape == (300,) and not np.any(trace["skipped"])
    key = jax.random.key(4)
    before = np.asarray(model.log_marginal(params, key, model.x_test, k=200))
    after = np.asarray(model.log_marginal(trained, key, model.x_test, k=200))
    gain = after - before
    assert gain.mean() / (gain.std(ddof=1) / np.sqrt(len(gain))) > z_bound(1)


def median_snr(draws, rng, num_boot=200):
    """Median over parameters of |mean| / sd, and its bootstrap (over draws) sd."""
    draws = np.asarray(draws, dtype=np.float64)
    boot = [
        np.median(snr(draws[rng.integers(0, len(draws), len(draws))])) for _ in range(num_boot)
    ]
    return np.median(snr(draws)), np.std(boot, ddof=1)


def test_iwae_snr_rises_for_decoder_and_falls_for_encoder(small, trained):
    """Rainforth et al. (2018), Theorem 1: decoder SNR O(sqrt K), encoder O(1/sqrt K);
    measured after 300 training steps (at the random init the trend is weak)."""
    model, params = small[0], trained[0]
    x = jnp.asarray(model.x_test[:4])
    rng = np.random.default_rng(0)
    out = {}
    for k in (1, 100):
        encoder, decoder = gradient_draws(
            jax.random.key(k), model, params, Objective("iwae", k), x, num_draws=200
        )
        out[k] = {"encoder": median_snr(encoder, rng), "decoder": median_snr(decoder, rng)}
    bound = z_bound(2)
    for net, sign in (("decoder", 1.0), ("encoder", -1.0)):
        (low_k, low_se), (high_k, high_se) = out[1][net], out[100][net]
        z = sign * (high_k - low_k) / np.hypot(low_se, high_se)
        assert z > bound, (net, out)


@pytest.mark.slow
def test_burda2015_iwae_figure_quick(tmp_path):
    """Quick mode: table columns, finite values, plot files; for one and two stochastic
    layers IWAE k=50 beats VAE k=1 by a paired gain many standard errors wide (Burda et
    al.'s ordering)."""
    from bayeswb.figures import burda2015_iwae

    tables = burda2015_iwae.compute(quick=True, seed=0)
    results = tables["results"]
    columns = {"layers", "method", "k", "test_log_likelihood", "se", "gain_vs_vae_k1", "gain_se"}
    assert columns <= set(results.columns)
    assert set(results.layers) == {1, 2} and np.all(np.isfinite(results.test_log_likelihood))
    assert list(tables["published"].columns) == [
        "setting",
        "metric",
        "ours",
        "published",
        "difference",
    ]
    best = results[(results.method == "IWAE") & (results.k == 50)]
    assert len(best) == 2 and np.all(best.gain_vs_vae_k1 / best.gain_se > z_bound(2)), best
    paths = burda2015_iwae.plot(tables, tmp_path)
    assert {p.name for p in paths} == {"burda2015_iwae.png", "burda2015_iwae.pdf"}
    assert all(p.stat().st_size > 0 for p in paths)


@pytest.mark.slow
def test_rainforth2018_snr_figure_quick(tmp_path):
    """Quick mode: columns, finite SNRs, plot files; the exact coincidences (CIWAE = IWAE
    at K = 1, PIWAE's encoder = MIWAE's) hold in the table."""
    from bayeswb.figures import rainforth2018_snr

    tables = rainforth2018_snr.compute(quick=True, seed=0)
    results = tables["results"]
    assert {"method", "K", "network", "snr_median", "snr_mean", "snr_floor"} <= set(
        results.columns
    )
    assert np.all(np.isfinite(results.snr_median)) and np.all(results.snr_median > 0)
    cell = lambda m, k, n: results.query("method == @m and K == @k and network == @n").iloc[0]
    for network in ("encoder", "decoder"):
        np.testing.assert_allclose(
            cell("CIWAE", 1, network).snr_median, cell("IWAE", 1, network).snr_median, rtol=1e-6
        )
    for k in results.K.unique():
        np.testing.assert_allclose(
            cell("PIWAE", k, "encoder").snr_median,
            cell("MIWAE", k, "encoder").snr_median,
            rtol=1e-4,
        )
    assert np.all(np.isfinite(tables["published"].ours))
    paths = rainforth2018_snr.plot(tables, tmp_path)
    assert {p.name for p in paths} == {"rainforth2018_snr.png", "rainforth2018_snr.pdf"}
