"""Overhead of bw.sample over blackjax, and over a bare gradient loop, side by side.

For every sampler that wraps a blackjax kernel (nuts, hmc, mala, mclmc, mams) on two
targets -- a
50-d Gaussian (condition number 10) with 4 chains, and logistic_breast_cancer (a numpyro
model with 569 observations) with 64 chains -- three programs run in one process:

- ``bw.sample`` with a fixed step size and no warmup, so that it runs exactly the kernel
  steps that the program below runs (the step size is the one bw's own warmup adapts on
  that target, so the steps are realistic; for mclmc and mams also the adapted length L);
- the same chains written straight against blackjax (``blackjax.nuts/hmc/mala/mclmc/
  adjusted_mclmc_dynamic`` with the same step size and identity mass matrix, ``lax.scan``
  over steps, ``vmap`` over chains);
- a bare jitted loop of ``vmap(value_and_grad(log_density))`` making as many gradient
  evaluations per chain as bw's run made: the limit for any gradient-based sampler.

Times exclude compilation (``cost['sample_s']`` for bw) and are the best of ``--repeats``,
interleaved so that machine noise hits all alike. NUTS and MAMS make a random number of
gradient evaluations per step, and vmapped chains step in lockstep (each step costs what
its longest trajectory costs), so their ratio against blackjax is per lockstep gradient
evaluation: the sum over steps of the largest number of integration steps among the
chains.
Goals (issue 20): at most 1.05 against blackjax and at most 1.3 against the bare loop.

    python benchmarks/overhead.py [--quick] [--repeats 5] [--samplers mala mams]
                                  [--json ratios.json]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from typing import Any

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
from blackjax.mcmc import adjusted_mclmc_dynamic

import bayeswb as bw

SAMPLERS = ("nuts", "hmc", "mala", "mclmc", "mams")
HMC_STEPS = 16  # bw's hmc default num_integration_steps
# samplers whose steps take a random number of gradients: compared per lockstep gradient
RANDOM_LENGTH = ("nuts", "mams")


def blackjax_program(
    target: bw.Target, sampler: str, step_size: float, L: float, chains: int, steps: int
):
    """The chains written straight against blackjax: (positions, gradient evaluations of
    each step of each chain). ``L`` is mclmc's momentum decoherence length and mams's
    mean trajectory length (unused by the others)."""
    ones = jnp.ones(target.dim)
    mams_lengths = adjusted_mclmc_dynamic.make_random_trajectory_length_fn(True)
    algorithm = {
        "nuts": lambda: blackjax.nuts(target.log_density, step_size, ones),
        "hmc": lambda: blackjax.hmc(target.log_density, step_size, ones, HMC_STEPS),
        "mala": lambda: blackjax.mala(target.log_density, step_size),
        "mclmc": lambda: blackjax.mclmc(target.log_density, L, step_size),
        "mams": lambda: blackjax.adjusted_mclmc_dynamic(
            target.log_density,
            step_size,
            integration_steps_fn=mams_lengths,
            integration_steps_params=(L / step_size,),
        ),
    }[sampler]()

    def gradients(info: Any) -> jax.Array:
        if sampler in RANDOM_LENGTH:
            return info.num_integration_steps * (2 if sampler == "mams" else 1)
        return jnp.asarray({"hmc": HMC_STEPS, "mclmc": 2}.get(sampler, 1))

    def one_chain(key: jax.Array) -> Any:
        init_key, sample_key = jax.random.split(key)
        position = target.init(init_key)
        if sampler == "mclmc":
            state = algorithm.init(position, jax.random.fold_in(init_key, 1))
        elif sampler == "mams":
            state = algorithm.init(position, jax.random.key_data(init_key))
        else:
            state = algorithm.init(position)

        def step(state: Any, key: jax.Array) -> Any:
            state, info = algorithm.step(key, state)
            return state, (state.position, gradients(info))

        _, (positions, grads) = jax.lax.scan(step, state, jax.random.split(sample_key, steps))
        return positions, grads

    return jax.jit(lambda key: jax.vmap(one_chain)(jax.random.split(key, chains)))


def bare_program(target: bw.Target, grads: int):
    """``grads`` evaluations of the gradient per chain and nothing else."""
    value_and_grad = jax.vmap(jax.value_and_grad(target.log_density))

    def step(x: jax.Array, _: None) -> tuple[jax.Array, jax.Array]:
        value, grad = value_and_grad(x)
        return x + 1e-6 * grad, value

    return jax.jit(lambda x: jax.lax.scan(step, x, None, length=grads))


def timed(run: Any, *args: Any) -> float:
    """Seconds to run and bring the outputs to the host (as bw's ``sample_s`` does)."""
    start = time.perf_counter()
    jax.device_get(run(*args))
    return time.perf_counter() - start


def adapted(target: bw.Target, sampler: str, chains: int, warmup: int) -> tuple[float, float]:
    """The step size (and for mclmc and mams the length L) bw's own warmup picks on this
    target (medians over chains)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = bw.sample(
            target, sampler, num_chains=chains, num_samples=10, num_warmup=warmup, seed=1
        )
    stats = r.idata.sample_stats
    length = float(np.median(stats["L"].values)) if "L" in stats else float("nan")
    return float(np.median(stats["step_size"].values)), length


def fixed_settings(target: bw.Target, sampler: str, step_size: float, L: float) -> dict:
    """bw's options that run the given step size (and L) with no warmup."""
    if sampler == "hmc":
        # blackjax's hmc has no jitter of the step: bw's (on by default) is switched off,
        # so that both run the same transitions
        return {"step_size": step_size, "step_size_jitter": 0.0}
    if sampler not in ("mclmc", "mams"):
        return {"step_size": step_size}
    # untuned, bw's microcanonical samplers scale their options by sqrt(dim), with an
    # identity preconditioner, as blackjax's kernels run here
    sqrt_dim = np.sqrt(target.dim)
    settings = {"step_size_per_sqrt_dim": step_size / sqrt_dim}
    if sampler == "mclmc":
        return settings | {"L_per_sqrt_dim": L / sqrt_dim}
    return settings | {"num_integration_steps": L / step_size}


def compare(
    target: bw.Target, sampler: str, chains: int, steps: int, repeats: int, warmup: int = 500
) -> dict:
    step_size, L = adapted(target, sampler, chains, warmup)
    settings = dict(num_chains=chains, num_samples=steps, num_warmup=0)
    settings |= fixed_settings(target, sampler, step_size, L)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the verdict on a short run without warmup
        first = bw.sample(target, sampler, seed=0, **settings)
    grads_per_chain = first.cost["n_grad_evals"] / chains
    lockstep = 1.0
    if sampler in RANDOM_LENGTH:
        lockstep = float(first.idata.sample_stats["n_steps"].values.max(axis=0).sum())

    direct = blackjax_program(target, sampler, step_size, L, chains, steps)
    direct_compiled = direct.lower(jax.random.key(0)).compile()
    _, direct_grads = direct_compiled(jax.random.key(0))
    direct_lockstep = 1.0
    if sampler in RANDOM_LENGTH:
        # per-step gradients are n_steps times a constant: the same for both sides
        per = 2 if sampler == "mams" else 1
        direct_lockstep = float(np.asarray(direct_grads).max(axis=0).sum()) / per
    starts = jax.vmap(target.init)(jax.random.split(jax.random.key(2), chains))
    bare = bare_program(target, round(grads_per_chain)).lower(starts).compile()

    bw_times, direct_times, bare_times = [], [], []
    for _ in range(repeats):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = bw.sample(target, sampler, seed=0, **settings)
        assert r.cost["compile_s"] == 0.0, "a repeated run recompiled"
        bw_times.append(r.cost["sample_s"])
        direct_times.append(timed(direct_compiled, jax.random.key(0)))  # the counted chains
        bare_times.append(timed(bare, starts))
    bw_s, direct_s, bare_s = min(bw_times), min(direct_times), min(bare_times)
    per_grad = lockstep / direct_lockstep  # 1 for hmc, mala and mclmc
    return {
        "target": target.name,
        "sampler": sampler,
        "chains": chains,
        "steps": steps,
        "step_size": step_size,
        "grads_per_chain": grads_per_chain,
        "bw_s": bw_s,
        "blackjax_s": direct_s,
        "bare_s": bare_s,
        "vs_blackjax": bw_s / (direct_s * per_grad),
        "vs_bare": bw_s / bare_s,
    }


CASES = (  # (model, its parameters, chains, steps)
    ("gaussian", {"dim": 50, "condition_number": 10.0}, 4, 2000),
    ("logistic_breast_cancer", {}, 64, 1000),
)
QUICK_CASES = (("gaussian", {"dim": 10, "condition_number": 10.0}, 4, 50),)


def measure(
    quick: bool = False,
    repeats: int = 5,
    report: bool = True,
    samplers: tuple[str, ...] = SAMPLERS,
) -> list[dict]:
    """One row per (target, sampler) of :data:`CASES` x :data:`SAMPLERS` (``quick``: a
    10-d Gaussian, 50 steps after 100 warmup steps, one repeat), printed as a table when
    ``report``."""
    cases = QUICK_CASES if quick else CASES
    repeats = 1 if quick else repeats
    rows = []
    if report:
        print(
            f"{'target':24} {'sampler':7} {'chains':>6} {'grads/chain':>11} "
            f"{'bw s':>8} {'blackjax s':>10} {'bare s':>8} {'bw/blackjax':>11} {'bw/bare':>8}"
        )
    for name, parameters, chains, steps in cases:
        target = bw.models.get(name, **parameters)
        for sampler in samplers:
            row = compare(target, sampler, chains, steps, repeats, 100 if quick else 500)
            rows.append(row)
            if report:
                print(
                    f"{row['target']:24} {sampler:7} {chains:>6} "
                    f"{row['grads_per_chain']:>11.0f} {row['bw_s']:>8.3f} "
                    f"{row['blackjax_s']:>10.3f} {row['bare_s']:>8.3f} "
                    f"{row['vs_blackjax']:>11.3f} {row['vs_bare']:>8.3f}",
                    flush=True,
                )
    if report:
        print(
            f"worst bw/blackjax {max(r['vs_blackjax'] for r in rows):.3f} (goal <= 1.05), "
            f"worst bw/bare {max(r['vs_bare'] for r in rows):.3f} (goal <= 1.3)"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few steps, one repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    rows = measure(args.quick, args.repeats, samplers=tuple(args.samplers))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": str(jax.devices()[0]), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
