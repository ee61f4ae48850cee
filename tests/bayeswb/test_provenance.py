"""A run's manifest (bayeswb/core/provenance.py): what made it, kept through save, load and
resume."""

import jax
import pytest

import bayeswb as bw
from bayeswb.core.provenance import MANIFEST_ATTRIBUTE, stored_manifest

SMALL = {"num_chains": 2, "num_samples": 40, "num_warmup": 20}


def test_a_run_carries_its_manifest_through_save_and_load(tmp_path):
    target = bw.models.get("gaussian", dim=3, condition_number=10.0)
    result = bw.sample(target, "mala", seed=5, step_size=0.2, **SMALL)
    manifest = result.manifest
    assert manifest["seed"] == 5 and manifest["sampler"] == "mala"
    assert manifest["options"]["step_size"] == 0.2 and manifest["options"]["num_chains"] == 2
    assert manifest["target"]["name"] == "gaussian"
    assert manifest["target"]["parameters"] == {
        "dim": 3,
        "condition_number": 10.0,
        "rotation": None,
    }
    assert manifest["versions"]["jax"] == jax.__version__
    assert "git_revision" in manifest and manifest["x64"] is False
    path = str(tmp_path / "run.nc")
    result.save(path)
    assert bw.load(path).manifest == manifest


def test_a_key_seed_is_recorded_as_its_data():
    key = jax.random.key(7)
    result = bw.sample("gaussian", "mala", seed=key, **SMALL)
    assert result.manifest["seed"] == jax.random.key_data(key).tolist()


def test_a_resumed_run_keeps_the_manifest_of_the_call_that_started_it(tmp_path):
    path = str(tmp_path / "run.ckpt")
    first = bw.sample("gaussian", "mala", seed=9, chunk_size=20, checkpoint=path, **SMALL)
    resumed = bw.resume(path)
    assert resumed.manifest["seed"] == 9 and resumed.manifest["chunk_size"] == 20
    assert resumed.manifest["resumed_from"] == path
    assert {k: v for k, v in resumed.manifest.items() if k != "resumed_from"} == first.manifest


def test_a_damaged_manifest_is_one_clear_line():
    result = bw.sample("gaussian", "mala", seed=1, **SMALL)
    result.idata.posterior.attrs[MANIFEST_ATTRIBUTE] = "{not json"
    with pytest.raises(ValueError, match="^the result's manifest is damaged"):
        stored_manifest(result.idata)


def test_vector_options_go_into_the_manifest_and_through_a_checkpoint(tmp_path):
    path = str(tmp_path / "run.ckpt")
    inverse_mass = (1.0, 2.0, 0.5)
    first = bw.sample(
        bw.models.get("gaussian", dim=3),
        "mala",
        seed=2,
        chunk_size=20,
        checkpoint=path,
        inverse_mass_matrix=inverse_mass,
        **SMALL,
    )
    assert first.manifest["options"]["inverse_mass_matrix"] == list(inverse_mass)
    assert bw.resume(path).manifest["options"] == first.manifest["options"]
