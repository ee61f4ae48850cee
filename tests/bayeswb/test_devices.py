"""Chains (hmc, mala; a chunked run) and independent SMC runs sharded over several
(host-emulated) devices give the single-device draws within a float-rounding bound, in
float32 and float64 (derived in the script); with warmup adaptation (nuts, mala) only
the first transition is bounded, as the adaptation amplifies rounding.

XLA's device count is fixed when JAX starts, so the check runs in a subprocess with
``--xla_force_host_platform_device_count=8``.
"""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import os
    # XLA's default code generation (not the test suite's cheapest one, tests/conftest.py):
    # the no-flip claims below were checked for the programs users run
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    import jax
    import numpy as np
    import bayeswb as bw

    assert jax.device_count() == 8
    t = bw.models.get("gaussian", dim=3)
    one = jax.devices()[:1]

    # The bound of docs/design.md, section 5. Both layouts run the same arithmetic per
    # chain, but XLA compiles it for a batch of 1 chain per device against 8 on one
    # device and may round it differently (a product reassociated or constant-folded,
    # another vectorisation): each rounding differs by at most eps relative, on values
    # of the draws' scale S. Along a chain's path one gradient evaluation and the update
    # it feeds take a few roundings (the gradient, the momentum and position updates):
    # at most ROUNDINGS. With a fixed step on this Gaussian a transition does not expand
    # a difference in position (a stable leapfrog trajectory's or Langevin step's
    # position-to-position factor is at most 1 in modulus; a rejection keeps the
    # position), so the differences add up instead of growing: after G gradient
    # evaluations on its path a draw is within ROUNDINGS * G * eps * S, unless an
    # accept/reject or tree decision flips (its uniform would have to fall within that
    # much of the threshold; this seed has none). eps64 / eps32 ~ 2e-9: float64 runs
    # agree that much more tightly.
    ROUNDINGS = 8

    def check(sharded, single, gradients, x64=False, scale=None):
        sharded, single = np.asarray(sharded), np.asarray(single)
        eps = np.finfo(np.float64 if x64 else np.float32).eps
        scale = np.abs(single).max() if scale is None else scale
        bound = ROUNDINGS * gradients * eps * scale
        diff = np.abs(sharded - single).max()
        assert diff <= bound, (diff, bound, gradients, x64)

    def chain_gradients(result):  # MCMC: all of a chain's gradients are on its path
        return result.cost["n_grad_evals"] / result.positions.shape[0]

    # fixed tuning, float32 and float64; mala's h / min variance = 0.5 < 2 is stable (at
    # h = 0.5 most chains rejected every proposal and never moved)
    for x64 in (False, True):
        for name, step_size in [("hmc", 0.3), ("mala", 0.05)]:
            settings = dict(seed=3, num_chains=8, num_samples=40, num_warmup=0,
                            step_size=step_size, x64=x64)
            sharded = bw.sample(t, name, **settings)
            single = bw.sample(t, name, devices=one, **settings)
            check(sharded.positions, single.positions, chain_gradients(single), x64)
            if (name, x64) == ("hmc", False):
                single_hmc = single
    # a chunked run shards its start-up and every chunk the same way
    settings = dict(seed=3, num_chains=8, num_samples=40, num_warmup=0, step_size=0.3)
    chunked = bw.sample(t, "hmc", chunk_size=15, **settings)
    check(chunked.positions, single_hmc.positions, chain_gradients(single_hmc))
    # smc: independent runs sharded like chains. A particle's path has the gradients of
    # its moves and sums over the run's N particles (weights, preconditioner, each
    # within N eps relative); a run's log Z sums log-mean-exps over them of log
    # densities carrying the paths' rounding: the bound with G + N roundings, for log Z
    # on the scale of the summed increments (the adaptive schedule's thresholds could
    # flip too, docs/design.md; this seed has no flip)
    settings = dict(seed=3, num_chains=8, num_samples=64)
    sharded = bw.sample(t, "smc", **settings)
    single = bw.sample(t, "smc", devices=one, **settings)
    runs, particles = single.positions.shape[:2]
    gradients = single.cost["n_grad_evals"] / (runs * particles)
    check(sharded.positions, single.positions, gradients + particles)
    per_run = lambda r: r.idata.sample_stats["log_marginal_likelihood"].values
    increments = np.abs(single.idata.path_stats["log_z_increment"].values)
    check(per_run(sharded), per_run(single), gradients + particles,
          scale=np.nansum(increments, axis=-1).max())
    # with warmup adaptation the tuning feeds on the chain's own history (dual
    # averaging's gain on the acceptance rate, the mass-matrix windows), so one-ulp
    # differences grow to different draws of the same distribution, in float64 too:
    # only the first warmup transition, at the initial step size, is bounded
    for name in ("nuts", "mala"):
        settings = dict(seed=3, num_chains=8, num_samples=10, num_warmup=100)
        sharded = bw.sample(t, name, **settings)
        single = bw.sample(t, name, devices=one, **settings)
        steps = single.idata.warmup_sample_stats.get("n_steps")
        gradients = 1 + (1 if steps is None else int(steps.values[:, 0].max()))
        check(sharded.idata.warmup_posterior["x"].values[:, :1],
              single.idata.warmup_posterior["x"].values[:, :1], gradients)
    print("ok")
    """
)


def test_sharded_chains_match_single_device():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")
