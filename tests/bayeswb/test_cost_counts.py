"""Cost counters are exact at any size (issue 21): the program counts small events, the
host forms the products and sums in Python ints.

Without x64 a compiled program computes in int32, where a cost such as particles x steps x
sweeps wraps past 2**31 (ais with 1.1M particles, 40 steps of 50 sweeps reported
-2,050,967,296 gradients). These tests check the host reduction far beyond 2**31, the
counts of real (small) runs against the formulas the samplers define, and the issue's
run at its full size through its counting code and its traced program (running it would
take minutes).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bayeswb as bw
from bayeswb.core.draws import Count, Draws, exact_count
from bayeswb.core.probe import probe_evaluations
from bayeswb.core.result import Result
from bayeswb.samplers.smc.annealing import run_cost
from bayeswb.samplers.smc.moves import mala_move

INT32_MAX = 2**31 - 1
TARGET = bw.models.get("gaussian", dim=2)
# the run of issue 21
ISSUE = {"num_chains": 1, "num_samples": 1_100_000, "num_steps": 40, "num_mcmc_steps": 50}


# --------------------------------------------------------------------------- host reduction


def test_exact_count_of_per_chain_arrays_near_int32_max():
    per_chain = np.full(6, INT32_MAX, dtype=np.int32)
    per_step = np.full((6, 40), INT32_MAX - 7, dtype=np.int32)
    count = Count.of(per_chain, each=10**9) + Count.of(per_step, each=3) + 2**40
    expected = 6 * INT32_MAX * 10**9 + 6 * 40 * (INT32_MAX - 7) * 3 + 2**40
    assert exact_count(count) == expected and int(count) == expected
    assert exact_count(per_chain) == 6 * INT32_MAX  # a plain array: summed in int64
    assert exact_count(count * 5) == 5 * expected


def test_counts_leave_a_single_precision_program_exact():
    @jax.jit
    def program(per_chain):
        return Count.of(per_chain, each=10**12) + Count.of(3 * 10**15)

    with jax.enable_x64(False):
        count = program(jnp.full(4, INT32_MAX, dtype=jnp.int32))
    assert all(events.dtype == jnp.int32 for _, events in count.terms)
    assert exact_count(count) == 4 * INT32_MAX * 10**12 + 3 * 10**15


def test_a_vmapped_count_counts_every_run():
    # a term from a Python int is each x an array 1: vmapped, it is counted once per run
    runs = jax.vmap(lambda steps: Count.of(steps, each=7) + 2**35)(jnp.arange(5))
    assert exact_count(runs) == 7 * (0 + 1 + 2 + 3 + 4) + 5 * 2**35


def test_float_events_are_refused():
    with pytest.raises(TypeError, match="integer"):
        Count.of(jnp.ones(3))
    with pytest.raises(TypeError, match="integer"):
        exact_count(np.ones(3))


def test_result_cost_is_the_exact_python_int():
    grads = Count.of(np.full(3, INT32_MAX, dtype=np.int32), each=11)
    draws = Draws(
        positions=np.zeros((1, 2, 1)),
        stats={},
        n_grad_evals=grads,
        n_logdensity_evals=grads + 2**33,
    )
    result = Result.from_draws(
        draws,
        {"x": np.zeros((1, 2))},
        None,
        sampler="nuts",
        target="gaussian",
        config={},
        timings={"compile_s": 0.0, "sample_s": 0.0},
    )
    assert result.cost["n_grad_evals"] == 33 * INT32_MAX
    assert result.cost["n_logdensity_evals"] == 33 * INT32_MAX + 2**33
    assert type(result.cost["n_grad_evals"]) is int


# --------------------------------------------------------------------------- small runs


def _nuts(r, options):
    steps = r.idata.sample_stats["n_steps"].values.sum()
    steps += r.idata.warmup_sample_stats["n_steps"].values.sum()
    # one gradient per chain at initialisation, one per leapfrog step
    grads = int(steps) + options["num_chains"]
    return grads, grads


def _meanfield_vi(r, options):
    chains = options["num_chains"]
    grads = chains * options["num_warmup"] * options["num_mc_samples"]
    return grads, grads + chains * options["num_samples"]


def _is(r, options):
    # the gaussian_vi proposal: num_mc_samples gradients per fitting step, one log density
    # per draw
    return _meanfield_vi(r, options)


def _ais(r, options):
    # a fixed schedule and fixed sweeps, no pilot: every run takes num_steps steps of
    # num_mcmc_steps MALA sweeps, each moving all n particles
    chains, n = options["num_chains"], options["num_samples"]
    steps, sweeps = options["num_steps"], options["num_mcmc_steps"]
    assert np.isfinite(r.idata.path_stats["temperature"].values).sum() == chains * steps
    assert np.nansum(r.idata.path_stats["num_sweeps"].values) == chains * steps * sweeps
    grads = chains * n * steps * (1 + sweeps)
    # the n initial draws, then per step the moves' inits and sweeps and log gamma at all n
    return grads, chains * n + grads + chains * steps * n


def _smc(r, options):
    # adaptive temperatures and sweeps from an automatic reference: a probe, then a
    # fitting pilot of fit_n particles in two independent halves (their steps and sweeps
    # summed in the path's counts); MALA everywhere (one gradient per init and sweep)
    path = r.idata.path_stats
    chains, n, fit_n = options["num_chains"], options["num_samples"], options["fit_n"]
    half = fit_n // 2
    steps = int(np.isfinite(path["temperature"].values).sum())
    sweeps = int(np.nansum(path["num_sweeps"].values))
    fit_steps = int(np.isfinite(path["reference_pilot_temperature"].values).sum())
    fit_sweeps = int(np.nansum(path["reference_pilot_num_sweeps"].values))
    grads = n * (steps + sweeps) + half * (fit_steps + fit_sweeps)
    initial = chains * (n + fit_n)
    log_gamma = n * steps + half * fit_steps
    return grads, grads + initial + log_gamma + chains * probe_evaluations()


SMALL_RUNS = {
    "nuts": ("nuts", {"num_chains": 2, "num_samples": 30, "num_warmup": 30}, _nuts),
    "meanfield_vi": (
        "meanfield_vi",
        {"num_chains": 2, "num_samples": 20, "num_warmup": 30, "num_mc_samples": 4},
        _meanfield_vi,
    ),
    "is": (
        "is",
        {
            "num_chains": 2,
            "num_samples": 20,
            "num_warmup": 30,
            "num_mc_samples": 4,
            "proposal": "gaussian_vi",
        },
        _is,
    ),
    "ais": (
        "ais",
        {
            "num_chains": 2,
            "num_samples": 16,
            "num_steps": 5,
            "num_mcmc_steps": 3,
            "reference_scale": 1.0,
        },
        _ais,
    ),
    "smc": ("smc", {"num_chains": 2, "num_samples": 32, "fit_reference_particles": 16}, _smc),
}


@pytest.mark.parametrize("name", sorted(SMALL_RUNS))
def test_small_runs_count_what_the_algorithm_defines(name):
    sampler, options, expected = SMALL_RUNS[name]
    r = bw.sample(TARGET, sampler, seed=0, **options)
    formula_options = {**options, "fit_n": options.get("fit_reference_particles")}
    grads, evals = expected(r, formula_options)
    assert type(r.cost["n_grad_evals"]) is int and type(r.cost["n_logdensity_evals"]) is int
    assert (r.cost["n_grad_evals"], r.cost["n_logdensity_evals"]) == (grads, evals)


@pytest.mark.parametrize("name", ["ais", "nuts"])
def test_counts_are_the_same_in_double_precision(name):
    sampler, options, expected = SMALL_RUNS[name]
    r = bw.sample(TARGET, sampler, seed=1, x64=True, **options)
    assert r.positions.dtype == np.float64
    assert (r.cost["n_grad_evals"], r.cost["n_logdensity_evals"]) == expected(r, options)


# --------------------------------------------------------------------------- the issue's size


def test_the_issues_ais_count_is_exact_in_a_single_precision_program():
    n, steps, sweeps = ISSUE["num_samples"], ISSUE["num_steps"], ISSUE["num_mcmc_steps"]

    @jax.jit
    def program(steps_taken, step_sweeps):
        # as ais counts its main run: every particle is moved at every step
        return run_cost(mala_move(), n, n, steps_taken, step_sweeps)

    with jax.enable_x64(False):
        grads, evals = program(jnp.full(1, steps), jnp.full((1, steps), sweeps))
    assert grads.terms[0][1].dtype == jnp.int32
    assert int(grads) == n * (steps + steps * sweeps) == 2_244_000_000
    assert int(grads) > 2**31  # the int32 program wrapped it to -2,050,967,296
    assert int(evals) == n * (steps + steps * sweeps) + n * steps


def _fill_ais_events(count, steps, sweeps):
    """A traced ais Count's events as a fixed-schedule run fills them: each run's steps
    (chains,), each step's sweeps (chains, steps), Python-int constants ()."""
    values = {(1,): steps, (1, steps): sweeps, (): 1}
    return jax.tree.map(lambda leaf: np.full(leaf.shape, values[leaf.shape], leaf.dtype), count)


def test_the_issues_ais_program_counts_exactly():
    """The issue's whole ais program, traced (not run): every count it makes is int32
    events with the particle count kept static, and the host total is exact."""
    spec = bw.samplers.get("ais")
    config = spec.make_config(**ISSUE, reference_scale=1.0)
    with jax.enable_x64(False):
        draws = jax.eval_shape(lambda key: spec.run(key, TARGET, config), jax.random.key(0))
    n, steps, sweeps = ISSUE["num_samples"], ISSUE["num_steps"], ISSUE["num_mcmc_steps"]
    for count in (draws.n_grad_evals, draws.n_logdensity_evals):
        assert all(leaf.dtype == jnp.int32 for leaf in jax.tree.leaves(count))
        assert all(leaf.size <= steps for leaf in jax.tree.leaves(count))
    grads = exact_count(_fill_ais_events(draws.n_grad_evals, steps, sweeps))
    evals = exact_count(_fill_ais_events(draws.n_logdensity_evals, steps, sweeps))
    assert grads == n * steps * (1 + sweeps) == 2_244_000_000
    assert evals == n + grads + n * steps


# --------------------------------------------------------------------------- counted by the target

# small options that every sampler below accepts where it has them (one run: a batched
# loop would also run the counting callbacks of finished lanes)
COUNTED_OPTIONS = {
    "num_chains": 1, "num_samples": 16, "num_warmup": 10, "plateau_window": 0,
    "progress_bar": False, "num_steps": 4, "pilot_steps": 2, "hidden_width": 8,
    "num_layers": 2, "num_mc_samples": 4,
}  # fmt: skip
# the samplers whose runs the counting target can see whole: not those that
# differentiate through the target inside a lax.scan (pis, dds, cmcd, snf, craft: the
# callbacks do not run there), nor those with a vmapped while loop over the target (nuts,
# mams, nrpt, ais, smc and the SMC family: callbacks are refused); fbgvi counts a
# Hessian-vector product as a gradient (its docstring), and so does is for its Laplace
# fit's Hessian, which the counter sees as one gradient (its d tangents batched).
# pathfinder climbs by bayeswb's L-BFGS, a while loop without a cond, counted here at
# one chain (a batched loop also runs its finished lanes' callbacks)
COUNTED_SAMPLERS = (
    "amis", "flow_is", "flow_mcmc", "flow_vi", "fullrank_vi", "hmc", "kinetic_langevin",
    "mala", "mclmc", "meanfield_vi", "pathfinder", "randomized_midpoint", "ula", "vis",
)  # fmt: skip


@pytest.mark.parametrize("name", COUNTED_SAMPLERS)
def test_a_counting_target_sees_what_the_run_reports(name):
    """Every target gradient and density of a small run, counted by the target itself,
    equals the run's report (the sampler's pure run, not bw.sample's diagnostics)."""
    from helpers import counted_gaussian

    target, counts = counted_gaussian(2)
    spec = bw.samplers.get(name)
    fields = {field.name for field in dataclasses.fields(spec.config_cls)}
    options = {key: value for key, value in COUNTED_OPTIONS.items() if key in fields}
    if name == "amis":  # num_samples must be a multiple of 2 * num_warmup
        options["num_warmup"] = 4
    draws = spec.run(jax.random.key(0), target, spec.make_config(**options))
    jax.effects_barrier()
    assert int(draws.n_grad_evals) == counts["grad"]
    assert int(draws.n_logdensity_evals) == counts["value"] + counts["grad"] > 0
