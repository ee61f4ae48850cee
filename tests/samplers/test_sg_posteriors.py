"""sgld, csgmcmc and sghmc against the reference posterior of ``logistic_breast_cancer``.

A stochastic-gradient sampler at a constant step does not sample the posterior: the
discretisation and the minibatch noise bias it by O(h) (Welling and Teh 2011; Vollmer,
Zygalakis and Teh 2016, "Exploration of the (non-)asymptotic bias and variance of
stochastic gradient Langevin dynamics", JMLR 17). So each sampler's posterior means (in
reference posterior sds) must lie within ``allowance + z_bound(K) * MCSE`` of the
reference (K = 31 coordinates; the MCSE is ArviZ's of this run, combined with the
reference's stored MCSE).

The allowance is the bias of the sampler at exactly the test's settings, measured before
and independently of the test by one long run at another seed
(seed 12345, not the test's seed 0): the largest over coordinates of
``|long-run mean - reference mean| / sd + z_bound(31) * long-run MCSE / sd``, an upper
bound on the true bias at the false-alarm rate of ``tests/helpers.py``:

- sgld, 2 chains x 100,000 draws after 2,000 warmup (thinned by 10 for the estimate):
  largest error 0.110 sd, allowance 0.335. An earlier run at seed 0, 2 x 20,000 draws,
  gave 0.255, inside it.
- csgmcmc, 2 chains x 50,000 draws after 1,000 warmup (thinned by 10): largest error
  0.242 sd, allowance 0.305. (Its draws' sds are 0.44-0.57 of the posterior's: a cycle
  of 50 steps half spent in SGD leaves the sampling stage too short to recover the spread,
  Zhang et al.'s design; only the means are tested.)
- sghmc, 2 chains x 4,000 draws after 400 warmup: largest error 0.191 sd, allowance
  0.403 (remeasured when the kernel took Chen et al.'s order, the gradient where the
  position update ends; blackjax's order had given 0.207 and 0.419).

The settings are those a user finds without the truth, from the curvature (a user takes
it at the mode found by optimisation; measured here at the reference mean with
``jax.hessian`` of ``target.log_density``): the negative Hessian has eigenvalues
1.0 .. 59, so an Euler (Langevin) step is stable below 2 / 59 = 0.034 and a
leapfrog-type step below 2 / sqrt(59) = 0.26:
sgld h = 3e-3 (0.09 of its limit), csgmcmc's cycle starting at 0.01 (0.3 of it, its
sampling stage at or below 0.15). sghmc: h = 0.02 (0.08 of its limit), 25 steps per
transition (a trajectory of 0.5, half the widest posterior sd), and friction C = 2.5 (about
2 h lambda_max = 2.4), twice the C > h lambda_max that blackjax's discretisation (the gradient
taken where a step starts) would need to be stable; Chen et al.'s order, which the kernel
takes, needs only h sqrt(lambda_max) < 2 (``sghmc_build_kernel``). With no
gradient-noise estimate subtracted (``beta = 0``) the minibatch noise heats the momentum
by a factor ``1 + h V / (2 C)`` (Chen, Fox and Guestrin 2014, section 3.2), here at most
1.04: V, the variance of a 256-row gradient estimate at the reference mean, is at most
8.6 per coordinate. (A first try at C = 1 < h lambda_max, h = 0.05, was 2.3 sd off and
is not used.) Minibatches of 256 of the 569 rows.
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest
from helpers import z_bound

import bayeswb as bw
from bayeswb.models.bayesian import stored_references

MODEL = "logistic_breast_cancer"

# sampler: (options, draws per chain, warmup, allowance in posterior sds)
CASES = {
    "sgld": (dict(step_size=3e-3, batch_size=256), 12_000, 2_000, 0.335),
    "csgmcmc": (dict(step_size=0.01, batch_size=256, cycle_length=50), 5_000, 1_000, 0.305),
    "sghmc": (
        dict(step_size=0.02, batch_size=256, num_integration_steps=25, friction=2.5),
        1_000,
        200,
        0.403,
    ),
}


@pytest.fixture(scope="module")
def target():
    return bw.models.get(MODEL)


@pytest.mark.parametrize("sampler", sorted(CASES))
def test_posterior_means_within_the_measured_step_bias(target, sampler):
    options, num_samples, num_warmup, allowance = CASES[sampler]
    result = bw.sample(
        target,
        sampler,
        seed=0,
        num_chains=2,
        num_samples=num_samples,
        num_warmup=num_warmup,
        progress=False,
        **options,
    )
    assert int(result.idata.sample_stats["diverging"].sum()) == 0
    reference = target.reference
    reference_mcse = stored_references()[MODEL]["mcse_mean"]
    posterior = result.idata.posterior
    errors, bounds = [], []
    bound_z = z_bound(sum(np.size(m) for m in reference.mean.values()))
    for name, mean in reference.mean.items():
        sd = reference.sd[name]
        estimate = posterior[name].mean(("chain", "draw")).values
        mcse = az.mcse(posterior[name].to_dataset(), method="mean")[name].values
        mcse = np.hypot(mcse, np.asarray(reference_mcse[name]))
        errors.append(np.ravel(np.abs(estimate - mean) / sd))
        bounds.append(np.ravel(allowance + bound_z * mcse / sd))
    error, bound = np.concatenate(errors), np.concatenate(bounds)
    worst = int(np.argmax(error - bound))
    assert np.all(error <= bound), (
        f"{sampler}: |mean error| {error[worst]:.3f} sd at coordinate {worst} exceeds "
        f"{bound[worst]:.3f} (allowance {allowance} + z_bound x MCSE); errors "
        f"{np.round(error, 2)}"
    )
