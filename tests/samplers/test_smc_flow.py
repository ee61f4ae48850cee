"""Statistical tests of smc_flow (flow-initialised annealed-Langevin SMC) against exact answers.

Standard errors are across independent runs (each run trains its own flow and transports
its own particles), as in test_smc.py; bounds from ``helpers`` (family-wise false-alarm
rate 1e-3), log Z within the issue's 3 standard errors. Seeds are fixed.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import across_run_z_scores, assert_z_scores

import bayeswb as bw

RUNS = 16
PARTICLES = 256
OPTIONS = {
    "num_warmup": 100,
    "num_mc_samples": 16,
    "num_layers": 2,
    "hidden_width": 16,
    "pilot_particles": 128,
    # the pre-issue-15 start and schedule (unit scale at 0, no annealing ramp), pinned
    "init_scale": 1.0,
    "num_anneal_steps": 0,
}
GAUSSIAN = bw.models.get("gaussian", dim=4, condition_number=10.0)


@pytest.fixture(scope="module")
def result():
    return bw.sample(
        GAUSSIAN, "smc_flow", seed=11, num_chains=RUNS, num_samples=PARTICLES, **OPTIONS
    )


def test_log_z_gaussian_within_three_standard_errors(result):
    z = (result.log_z - GAUSSIAN.log_z) / result.log_z_se
    assert abs(z) < 3.0, f"log Z {result.log_z:.4f} vs {GAUSSIAN.log_z:.4f}, z = {z:.2f}"


def test_weighted_moments_gaussian(result):
    sd = GAUSSIAN.reference.sd["x"]
    z = across_run_z_scores(result, np.zeros_like(sd), sd**2)
    assert_z_scores(z, "smc_flow weighted mean and variance")


def test_cost_counts_flow_training_and_transport(result):
    temperature = result.idata.path_stats["temperature"].values
    steps = int(np.isfinite(temperature).sum())
    # the pilot takes the same steps as the main run (it fixed the schedule); one ULA
    # gradient at init and one per sweep for each particle, 5 sweeps per step
    transport = steps * (PARTICLES + OPTIONS["pilot_particles"]) * (1 + 5)
    training = RUNS * OPTIONS["num_warmup"] * OPTIONS["num_mc_samples"]
    assert result.cost["n_grad_evals"] == transport + training
    loss = result.idata.warmup_sample_stats["loss"].values
    assert loss.shape == (RUNS, OPTIONS["num_warmup"]) and np.isfinite(loss).all()
    assert not np.isnan(result.log_weights).any()


def test_planar_flow_is_rejected():
    spec = bw.samplers.get("smc_flow")
    with pytest.raises(ValueError, match="flow_type"):
        spec.make_config(flow_type="planar")
    with pytest.raises(ValueError, match="ess_threshold"):
        spec.make_config(ess_threshold=0.0)
