"""Two processes joined by ``jax.distributed`` on loopback share one run's chains.

Each process owns one CPU device; the chain axis is sharded over both, and every
process receives all chains, equal (up to float rounding of a different vectorisation)
to the single-process draws of the same seed: whole, chunked, checkpointed, interrupted
and resumed, and an SMC run in batches; and fusion and consensus with one data shard
per process. See docs/multihost.md.
"""

import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
from helpers import assert_sharded_draws_match, gaussian_mean_model

import bayeswb as bw

WORKER = textwrap.dedent(
    """
    import sys
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize("127.0.0.1:{port}", num_processes=2, process_id=int(sys.argv[1]))
    import numpy as np
    import bayeswb as bw
    from bayeswb.execution import long_run

    assert jax.process_count() == 2 and jax.device_count() == 2
    t = bw.models.get("gaussian", dim=3)
    whole = bw.sample(t, "hmc", **{settings!r})
    chunked = bw.sample(t, "hmc", chunk_size=15, **{settings!r})

    # interrupted after the start-up and one chunk are checkpointed, then resumed
    write = long_run.write_checkpoint
    def write_then_interrupt(path, meta, arrays):
        write(path, meta, arrays)
        if meta["done"] == 15:
            raise KeyboardInterrupt
    long_run.write_checkpoint = write_then_interrupt
    path = sys.argv[3] + "/hmc.ckpt"
    partial = bw.sample(t, "hmc", chunk_size=15, checkpoint=path, **{settings!r})
    long_run.write_checkpoint = write
    resumed = bw.resume(path, target=t)
    assert partial.partial and not resumed.partial
    # a fixed reference and sweep count: see FIXED_SMC in test_run_batches.py
    smc = bw.sample(t, "smc", seed=1, num_chains=4, num_samples=32, chunk_size=2,
                    checkpoint=sys.argv[3] + "/smc.ckpt", reference_scale=1.0,
                    num_mcmc_steps=5)
    # data shards: one per process (the sub-posteriors' NUTS at a fixed step)
    sys.path.insert(0, sys.argv[4])
    from helpers import gaussian_mean_model
    data_model = gaussian_mean_model()[0]
    sharded = {{name: bw.sample(data_model, name, **settings)
               for name, settings in {sharded_settings!r}.items()}}
    np.savez(sys.argv[2], whole=whole.positions, chunked=chunked.positions,
             resumed=resumed.positions, smc=smc.positions,
             **{{name: r.positions for name, r in sharded.items()}},
             **{{name + "_grads": r.cost["n_grad_evals"] for name, r in sharded.items()}})
    """
)
SETTINGS = {"seed": 3, "num_chains": 4, "num_samples": 40, "num_warmup": 0, "step_size": 0.3}
SHARDED = dict(seed=1, num_chains=2, num_samples=64, num_warmup=0, num_shards=2,
               subposterior_options={"step_size": 0.05}, progress=False)  # fmt: skip
SHARDED_SETTINGS = {"consensus": SHARDED, "fusion": dict(SHARDED, subposterior_draws=100)}


TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_share_the_chains_and_each_gets_all_draws(tmp_path):
    script = WORKER.format(port=free_port(), settings=SETTINGS, sharded_settings=SHARDED_SETTINGS)
    outputs = [tmp_path / f"process{i}.npz" for i in range(2)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(i), str(outputs[i]), str(tmp_path), TESTS],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    errors = []
    try:
        for worker in workers:
            errors.append(worker.communicate(timeout=600)[1])
    finally:  # a failed or hung worker must not outlive the test with its pipes open
        for worker in workers:
            worker.kill()
            worker.communicate()
    for i, worker in enumerate(workers):
        assert worker.returncode == 0, f"process {i}: {errors[i][-3000:]}"
    target = bw.models.get("gaussian", dim=3)
    single = bw.sample(target, "hmc", **SETTINGS).positions
    smc = bw.sample(
        target, "smc", seed=1, num_chains=4, num_samples=32, reference_scale=1.0, num_mcmc_steps=5
    ).positions
    data_model = gaussian_mean_model()[0]
    one_device = {name: bw.sample(data_model, name, **settings)
                  for name, settings in SHARDED_SETTINGS.items()}  # fmt: skip
    for output in outputs:
        with np.load(output) as draws:
            for name in ("whole", "chunked", "resumed"):
                np.testing.assert_allclose(draws[name], single, atol=1e-4)
            np.testing.assert_allclose(draws["smc"], smc, atol=1e-4)
            for name, settings in SHARDED_SETTINGS.items():
                draws_per_shard = settings.get("subposterior_draws", settings["num_samples"])
                assert_sharded_draws_match(
                    draws[name], draws[name + "_grads"], one_device[name], name,
                    settings["num_shards"], draws_per_shard,
                )  # fmt: skip
    # the batched smc run's checkpoint, written by process 0, resumes in this process
    np.testing.assert_allclose(
        bw.resume(str(tmp_path / "smc.ckpt"), target=target).positions, smc, atol=1e-4
    )
