"""Registries and config validation: clear errors before anything is compiled."""

import json

import pytest

import bayeswb as bw


def test_registered_names_cover_the_foundation():
    assert {"gaussian", "funnel", "eight_schools_noncentered"} <= set(bw.models.names())
    assert {"nuts", "hmc", "meanfield_vi", "fullrank_vi", "pathfinder"} <= set(bw.samplers.names())


def test_unknown_model_lists_close_names():
    with pytest.raises(KeyError, match="did you mean 'funnel'"):
        bw.models.get("funnle")


def test_unknown_sampler_lists_close_names():
    with pytest.raises(KeyError, match="did you mean 'nuts'"):
        bw.sample("gaussian", "nutz")


def test_unknown_model_parameter_is_named():
    with pytest.raises(ValueError, match="'dimension'"):
        bw.models.get("funnel", dimension=3)


def test_bad_model_parameter_value_is_named():
    with pytest.raises(ValueError, match="dim"):
        bw.models.get("funnel", dim=0)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"step_size": -0.1}, "step_size"),
        ({"num_chains": 0}, "num_chains"),
        ({"num_samples": 10.5}, "num_samples"),
        ({"num_warmup": -1}, "num_warmup"),
        ({"target_acceptance_rate": 1.5}, "target_acceptance_rate"),
        ({"dense_mass": "yes"}, "dense_mass"),
        ({"num_chains": True}, "num_chains"),
    ],
)
def test_bad_option_value_names_the_field(options, field):
    settings = {"num_chains": 2, "num_samples": 10, **options}
    with pytest.raises(ValueError, match=f"^{field} "):
        bw.sample("gaussian", "nuts", **settings)


def test_unknown_option_is_an_error_with_suggestion():
    with pytest.raises(ValueError, match="did you mean 'step_size'"):
        bw.sample("gaussian", "nuts", stepsize=0.1)


def test_bad_seed_is_an_error():
    with pytest.raises(ValueError, match="seed"):
        bw.sample("gaussian", "nuts", seed="zero")


def test_every_sampler_config_has_valid_defaults():
    for name in bw.samplers.names():
        config = bw.samplers.get(name).make_config()
        assert config.num_chains > 0 and config.num_samples > 0


@pytest.mark.parametrize("name", bw.samplers.names())
def test_every_default_config_saves_and_loads_exactly(name):
    from bayeswb.core.config import config_from_json, config_to_json

    spec = bw.samplers.get(name)
    config = spec.make_config()
    saved = json.loads(json.dumps(config_to_json(config)))  # through JSON text, as on disk
    assert config_from_json(spec.config_cls, saved) == config


def test_minibatch_samplers_declare_that_they_need_the_interface():
    plain = bw.models.get("gaussian", dim=2)
    needs = {name for name in bw.samplers.names() if bw.samplers.get(name).needs_minibatch}
    assert needs == {
        "sgld",
        "entropy_mcmc",
        "sghmc",
        "csgmcmc",
        "consensus",
        "fusion",
        "mc_fusion",
    }
    assert not bw.samplers.get("sgld").runs_on(plain)
    assert not bw.samplers.get("fusion").runs_on(plain)
    assert bw.samplers.get("nuts").runs_on(plain)
    with pytest.raises(ValueError, match="no minibatch interface"):
        bw.sample(plain, "sgld", num_chains=1, num_samples=10)
    with pytest.raises(ValueError, match="no minibatch interface"):
        bw.sample(plain, "fusion", num_chains=1, num_samples=10)


def test_the_module_table_names_where_every_sampler_is_registered():
    """``bayeswb.samplers.MODULES`` lets a run import only its own sampler's module: it
    must name every registered sampler, and the module that registers it."""
    from bayeswb.core.sampler import SAMPLERS
    from bayeswb.samplers import MODULES

    assert sorted(MODULES) == bw.samplers.names()
    for name, module in MODULES.items():
        assert SAMPLERS.get(name).run.__module__ == f"bayeswb.samplers.{module}", name


LAZY_SCRIPT = """
import sys
import bayeswb as bw
assert bw.samplers.get("nuts").name == "nuts"
loaded = {m for m in sys.modules if m.startswith("bayeswb.samplers.")}
assert "bayeswb.samplers.baselines" in loaded, loaded
assert not loaded & {"bayeswb.samplers.diffusion", "bayeswb.samplers.flows",
                     "bayeswb.samplers.smc"}, loaded
try:  # a user's sampler may not take a built-in name, even one not yet imported
    @bw.samplers.register("smc", bw.samplers.get("nuts").config_cls, family="mine")
    def run(key, target, config, layout=None):
        pass
except ValueError as error:
    assert "already registered" in str(error)
else:
    raise AssertionError("registered over the built-in smc")
assert len(bw.samplers.names()) == len(bw.samplers.MODULES)
print("ok")
"""


def test_a_sampler_is_registered_without_importing_the_other_families():
    """A fresh process asking for nuts imports its module, not the flows, diffusion and
    SMC families; a user's sampler cannot shadow a built-in one not yet imported; listing
    the names registers them all."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", LAZY_SCRIPT], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"
