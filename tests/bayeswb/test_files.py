"""Files the workbench writes (issue 21): replaced whole or not at all, their folders checked
before a run starts, and no path read from a checkpoint written to unchecked."""

import os

import numpy as np
import pytest
import xarray as xr

import bayeswb as bw
from bayeswb.cli import main
from bayeswb.execution import long_run
from bayeswb.execution import sample as sample_module
from bayeswb.execution.checkpoint import read_checkpoint, write_checkpoint

TARGET = bw.models.get("gaussian", dim=3)
RUN = {"num_chains": 2, "num_samples": 20, "num_warmup": 10}


@pytest.fixture(scope="module")
def result():
    return bw.sample(TARGET, "mala", **RUN)


def interrupted_run(monkeypatch, checkpoint, stream):
    """A streamed, checkpointed run stopped (Ctrl-C) once its first chunk is checkpointed."""
    save = long_run.save_checkpoint

    def save_then_interrupt(run):
        save(run)
        if run.done > 0:
            raise KeyboardInterrupt

    monkeypatch.setattr(long_run, "save_checkpoint", save_then_interrupt)
    partial = bw.sample(TARGET, "mala", chunk_size=10, checkpoint=checkpoint, stream=stream, **RUN)
    monkeypatch.setattr(long_run, "save_checkpoint", save)
    assert partial.partial
    return partial


@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()])
def test_a_save_that_fails_midway_leaves_the_previous_file(result, tmp_path, monkeypatch, failure):
    path = tmp_path / "run.nc"
    result.save(str(path))
    before = path.read_bytes()
    write_group = xr.Dataset.to_netcdf
    groups_written = []

    def fail_at_the_second_group(dataset, *args, **kwargs):
        if groups_written:
            raise failure
        groups_written.append(kwargs.get("group"))
        return write_group(dataset, *args, **kwargs)

    monkeypatch.setattr(xr.Dataset, "to_netcdf", fail_at_the_second_group)
    with pytest.raises(type(failure)):
        result.save(str(path))
    assert groups_written  # the save had begun writing when it failed
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["run.nc"]
    np.testing.assert_array_equal(bw.load(str(path)).positions, result.positions)


def test_a_loaded_result_saves_over_its_own_file(result, tmp_path):
    path = str(tmp_path / "run.nc")
    result.save(path)
    loaded = bw.load(path)  # reads the file lazily
    assert loaded.save(path) == path
    again = bw.load(path)
    np.testing.assert_array_equal(again.positions, result.positions)
    np.testing.assert_array_equal(loaded.positions, result.positions)
    assert again.config == result.config and again.cost == result.cost
    assert os.listdir(tmp_path) == ["run.nc"]


def test_outputs_that_cannot_be_written_are_refused_before_sampling(tmp_path, monkeypatch):
    class NoSampling:
        @staticmethod
        def start(*args, **kwargs):
            raise AssertionError("the run started before its paths were checked")

    monkeypatch.setattr(sample_module, "DrawChunks", NoSampling)
    missing = tmp_path / "missing"
    refused = {
        "checkpoint: folder .*missing does not exist": {"checkpoint": str(missing / "r.ckpt")},
        "stream: folder .*missing does not exist": {"stream": str(missing / "draws.nc")},
        "checkpoint: .* is a folder": {"checkpoint": str(tmp_path)},
        "checkpoint and stream are the same file": {
            "checkpoint": "run.ckpt",
            "stream": str(tmp_path / "run.ckpt"),
        },
    }
    monkeypatch.chdir(tmp_path)
    for message, paths in refused.items():
        with pytest.raises(ValueError, match=message):
            bw.sample(TARGET, "mala", chunk_size=10, **paths, **RUN)
    assert os.listdir(tmp_path) == []


def test_a_read_only_folder_is_refused_before_sampling(tmp_path, monkeypatch):
    folder = tmp_path / "read_only"
    folder.mkdir(mode=0o500)
    # root may write into a read-only folder: ask os.access as an unprivileged user would
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda path, mode: False if path == str(folder) else real_access(path, mode)
    )
    with pytest.raises(ValueError, match="checkpoint: folder .*read_only is not writable"):
        bw.sample(TARGET, "mala", chunk_size=10, checkpoint=str(folder / "r.ckpt"), **RUN)


def test_relative_paths_resume_from_another_working_directory(tmp_path, monkeypatch):
    started_in, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    started_in.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(started_in)
    interrupted_run(monkeypatch, "run.ckpt", "draws.nc")
    monkeypatch.chdir(elsewhere)
    resumed = bw.resume(str(started_in / "run.ckpt"), target=TARGET)
    uninterrupted = bw.sample(TARGET, "mala", chunk_size=10, **RUN)
    assert not resumed.partial
    np.testing.assert_array_equal(resumed.positions, uninterrupted.positions)
    np.testing.assert_array_equal(
        bw.load(str(started_in / "draws.nc")).positions, resumed.positions
    )
    assert os.listdir(elsewhere) == []


def test_a_checkpoint_naming_another_file_as_its_stream_is_refused(result, tmp_path, monkeypatch):
    interrupted_run(monkeypatch, str(tmp_path / "a.ckpt"), str(tmp_path / "a.nc"))
    interrupted_run(monkeypatch, str(tmp_path / "b.ckpt"), str(tmp_path / "b.nc"))
    notes = tmp_path / "notes.txt"
    notes.write_text("not draws\n")
    result.save(str(tmp_path / "result.nc"))
    refused = {
        tmp_path / "b.nc": "is not this run's stream",  # a stream, of another run
        tmp_path / "result.nc": "is not a bayeswb stream",
        notes: "is not a readable bayeswb stream",
        tmp_path / "missing.nc": "does not exist",
    }
    meta, arrays = read_checkpoint(str(tmp_path / "a.ckpt"))
    edited = str(tmp_path / "edited.ckpt")
    for stream, message in refused.items():
        before = stream.read_bytes() if stream.exists() else None
        write_checkpoint(edited, meta | {"stream": str(stream)}, arrays)
        with pytest.raises(ValueError, match=message):
            bw.resume(edited, target=TARGET)
        assert (stream.read_bytes() if stream.exists() else None) == before
    assert not bw.resume(str(tmp_path / "a.ckpt"), target=TARGET).partial  # unedited: resumes


def test_cli_refuses_an_out_folder_that_does_not_exist_before_running(
    tmp_path, capsys, monkeypatch
):
    def no_sampling(*args, **kwargs):
        raise AssertionError("the run started before --out was checked")

    monkeypatch.setattr(bw, "sample", no_sampling)
    status = main(["run", "gaussian", "mala", "--out", str(tmp_path / "nodir" / "run.nc")])
    error = capsys.readouterr().err
    assert status == 2
    assert "--out: folder" in error and "nodir does not exist" in error
    assert error.count("\n") == 1 and "Traceback" not in error
