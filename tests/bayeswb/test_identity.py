"""A run knows its target: checkpoints resume and results score only on the target they
were made on (name, dimension, registry parameters and density are compared)."""

import jax.numpy as jnp
import numpy as np
import pytest

import bayeswb as bw

RUN = dict(seed=2, num_chains=2, num_samples=20, num_warmup=20)


def test_resume_refuses_a_target_with_other_parameters(tmp_path):
    path = str(tmp_path / "run.ckpt")
    bw.sample(bw.models.get("gaussian", dim=3), "mala", chunk_size=10, checkpoint=path, **RUN)
    other = bw.models.get("gaussian", dim=3, condition_number=1000.0)
    with pytest.raises(ValueError, match="condition_number.*10.0.*not on.*1000.0"):
        bw.resume(path, target=other)
    same = bw.models.get("gaussian", dim=3)  # a new object of the same model: accepted
    assert bw.resume(path, target=same).positions.shape == (2, 20, 3)


def test_resume_without_a_target_rebuilds_the_model_with_its_parameters(tmp_path):
    path = str(tmp_path / "run.ckpt")
    funnel = bw.models.get("funnel", dim=3, scale=0.5)
    whole = bw.sample(funnel, "mala", **RUN)
    bw.sample(funnel, "mala", chunk_size=10, checkpoint=path, **RUN)
    resumed = bw.resume(path)
    np.testing.assert_allclose(resumed.positions, whole.positions, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="scale"):
        bw.resume(path, target=bw.models.get("funnel", dim=3))


def test_a_user_target_with_other_data_is_refused_by_resume_and_score(tmp_path):
    def normal(shift):
        return bw.Target.from_logdensity(
            lambda x: -0.5 * jnp.sum((x - shift) ** 2), dim=2, name="normal"
        )

    path = str(tmp_path / "run.ckpt")
    result = bw.sample(normal(1.0), "mala", chunk_size=10, checkpoint=path, **RUN)
    with pytest.raises(ValueError, match="another density"):
        bw.resume(path, target=normal(2.0))
    saved = str(tmp_path / "run.nc")
    result.save(saved)
    with pytest.raises(ValueError, match="another density"):
        bw.score(bw.load(saved), normal(2.0))
    assert "verdict" in bw.score(bw.load(saved), normal(1.0))


def test_score_refuses_a_result_of_another_model():
    result = bw.sample(bw.models.get("gaussian", dim=2), "mala", **RUN)
    with pytest.raises(ValueError, match="made on target 'gaussian'.*not on 'banana'"):
        bw.score(result, bw.models.get("banana"))
