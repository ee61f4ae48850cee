"""Chunked runs, checkpoints, resume after SIGKILL, Ctrl-C, and bad checkpoint files."""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import bayeswb as bw
from bayeswb.execution import long_run

TARGET = bw.models.get("gaussian", dim=3)
RUN = {"seed": 3, "num_chains": 2, "num_samples": 120, "num_warmup": 60}


@pytest.fixture(scope="module")
def chunked():
    return bw.sample(TARGET, "nuts", chunk_size=25, **RUN)


def test_chunked_run_makes_the_draws_and_counts_of_a_whole_run(chunked):
    whole = bw.sample(TARGET, "nuts", **RUN)
    np.testing.assert_allclose(chunked.positions, whole.positions, rtol=1e-6, atol=1e-6)
    assert chunked.cost["n_grad_evals"] == whole.cost["n_grad_evals"]
    assert chunked.idata.warmup_posterior["x"].shape == (2, 60, 3)
    assert not chunked.partial


def test_thinning_keeps_every_kth_draw(chunked):
    thinned = bw.sample(TARGET, "nuts", chunk_size=25, thin=5, **RUN)
    np.testing.assert_array_equal(thinned.positions, chunked.positions[:, ::5])
    assert thinned.cost["n_grad_evals"] == chunked.cost["n_grad_evals"]


KILLED_RUN = """
import os, signal
import bayeswb as bw
from bayeswb.execution import long_run

saves = 0
save = long_run.save_checkpoint

def save_then_die(run):
    global saves
    save(run)
    saves += 1
    if saves == 3:  # the start-up and two chunks are on disk
        os.kill(os.getpid(), signal.SIGKILL)

long_run.save_checkpoint = save_then_die
bw.sample(bw.models.get("gaussian", dim=3), "nuts", chunk_size=25,
          checkpoint={path!r}, **{run!r})
raise SystemExit("not killed")
"""


def test_run_killed_by_sigkill_resumes_to_the_same_draws(chunked, tmp_path):
    path = str(tmp_path / "run.ckpt")
    script = textwrap.dedent(KILLED_RUN).format(path=path, run=RUN)
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]
    resumed = bw.resume(path, target=TARGET)
    np.testing.assert_array_equal(resumed.positions, chunked.positions)
    np.testing.assert_array_equal(
        resumed.idata.sample_stats["acceptance_rate"],
        chunked.idata.sample_stats["acceptance_rate"],
    )
    assert resumed.cost["n_grad_evals"] == chunked.cost["n_grad_evals"]


def test_ctrl_c_returns_the_draws_so_far_marked_partial(chunked, tmp_path, monkeypatch):
    path = str(tmp_path / "run.ckpt")
    save = long_run.save_checkpoint
    saves = []

    def save_then_interrupt(run):
        save(run)
        saves.append(run.done)
        if len(saves) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(long_run, "save_checkpoint", save_then_interrupt)
    partial = bw.sample(TARGET, "nuts", chunk_size=25, checkpoint=path, **RUN)
    assert partial.partial and "partial=True" in repr(partial)
    np.testing.assert_array_equal(partial.positions, chunked.positions[:, :50])
    monkeypatch.setattr(long_run, "save_checkpoint", save)
    np.testing.assert_array_equal(bw.resume(path, target=TARGET).positions, chunked.positions)


def test_sigint_lets_the_chunk_in_flight_finish(chunked, monkeypatch):
    compute = long_run.LongRun.add
    chunks = []

    def add_then_sigint(run, draws):
        compute(run, draws)
        chunks.append(run.kept)
        if len(chunks) == 2:  # Ctrl-C while the second chunk is being stored
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(long_run.LongRun, "add", add_then_sigint)
    partial = bw.sample(TARGET, "nuts", chunk_size=25, **RUN)
    assert partial.partial and partial.cost["n_grad_evals"] < chunked.cost["n_grad_evals"]
    np.testing.assert_array_equal(partial.positions, chunked.positions[:, :50])


def test_bad_checkpoints_are_clear_errors(tmp_path):
    path = tmp_path / "run.ckpt"
    bw.sample(TARGET, "nuts", chunk_size=60, checkpoint=str(path), **RUN)
    with pytest.raises(
        ValueError,
        match=r"made on target 'gaussian' with parameters \{'dim': 3.*not on 'gaussian' "
        r"with parameters \{'dim': 5",
    ):
        bw.resume(str(path), target=bw.models.get("gaussian", dim=5))
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="not a readable bayeswb checkpoint"):
        bw.resume(str(truncated))
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.zeros(3))
    with pytest.raises(ValueError, match="not a bayeswb checkpoint"):
        bw.resume(str(foreign))


def test_bad_chunk_options_are_clear_errors():
    with pytest.raises(ValueError, match="thin must be a positive integer dividing"):
        bw.sample(TARGET, "nuts", chunk_size=25, thin=4, **RUN)
    with pytest.raises(ValueError, match="chunk_size must be an integer >= 1"):
        bw.sample(TARGET, "nuts", chunk_size=0, **RUN)


def test_streamed_run_keeps_no_draws_in_memory_and_resumes(chunked, tmp_path, monkeypatch):
    stream, path = str(tmp_path / "draws.nc"), str(tmp_path / "run.ckpt")
    save = long_run.save_checkpoint
    saves = []

    def save_then_interrupt(run):
        assert run.store is None  # the draws live in the file only
        save(run)
        saves.append(run.done)
        if len(saves) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(long_run, "save_checkpoint", save_then_interrupt)
    partial = bw.sample(TARGET, "nuts", chunk_size=25, checkpoint=path, stream=stream, **RUN)
    assert partial.partial
    np.testing.assert_array_equal(partial.positions, chunked.positions[:, :50])
    monkeypatch.setattr(long_run, "save_checkpoint", save)
    resumed = bw.resume(path, target=TARGET)
    np.testing.assert_array_equal(resumed.positions, chunked.positions)
    assert not resumed.partial and bw.load(stream).positions.shape == (2, 120, 3)
    np.testing.assert_array_equal(
        resumed.idata.sample_stats["diverging"], chunked.idata.sample_stats["diverging"]
    )


def test_a_tuple_option_survives_a_checkpoint(tmp_path):
    """Checkpoints keep the config typed: a tuple comes back a tuple, not a refused list."""
    path = str(tmp_path / "mala.ckpt")
    options = {"inverse_mass_matrix": (1.0, 0.5, 2.0), **RUN}
    whole = bw.sample(TARGET, "mala", **options)
    chunked = bw.sample(TARGET, "mala", chunk_size=60, checkpoint=path, **options)
    resumed = bw.resume(path, target=TARGET)  # complete: rebuilds the config, draws nothing
    assert resumed.config["inverse_mass_matrix"] == (1.0, 0.5, 2.0)
    np.testing.assert_array_equal(resumed.positions, chunked.positions)
    np.testing.assert_allclose(chunked.positions, whole.positions, rtol=1e-6, atol=1e-6)


def test_an_option_a_checkpoint_cannot_hold_is_refused_before_compiling(tmp_path):
    from bayeswb.samplers.smc import make_move

    path = tmp_path / "smc.ckpt"
    with pytest.raises(ValueError, match=r"option move=.* cannot be written to a checkpoint"):
        run = {**RUN, "num_warmup": 0}  # smc has no warmup
        bw.sample(TARGET, "smc", move=make_move("mala"), checkpoint=str(path), **run)
    assert not path.exists()
