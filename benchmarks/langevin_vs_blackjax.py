"""Our ``mala`` against ``blackjax.mala`` run directly: same target, step size, chains,
steps and seeds; ratio of sampling time per step (compilation excluded).

Three programs, each compiled once before timing:

- ``bw.sample``: the user path, ``bw.sample(target, "mala", num_warmup=0, step_size=h)``,
  timed by its own ``cost["sample_s"]`` (the compiled program: sampler plus constraining
  of the draws; repeats hit the compile cache);
- ``ours``: the registered ``run`` function of ``mala`` (our kernel wrapper, chain driver
  and stats) jitted on its own;
- ``blackjax``: ``blackjax.mala(logdensity, h)`` stepped by a plain ``lax.scan`` over
  steps and ``vmap`` over chains, keeping per step what a user keeps: position, log
  density, acceptance rate and is_accepted.

They run alternately (interleaved repeats, the order rotating, so that load from other
processes hits all alike); the best of the repeats is compared, in wall time and in the
process's CPU time (all threads), which is less disturbed by other processes on a shared
machine.

Run: ``python benchmarks/langevin_vs_blackjax.py [--quick] [--repeats 7]``.
"""

from __future__ import annotations

import argparse
import os
import time

import blackjax
import jax
import numpy as np

import bayeswb as bw


def blackjax_program(target: bw.Target, step_size: float, chains: int, steps: int):
    """A compiled ``key -> traces`` running blackjax.mala directly."""
    algorithm = blackjax.mala(target.log_density, step_size)

    def run(key: jax.Array):
        def one_chain(chain_key: jax.Array):
            init_key, sample_key = jax.random.split(chain_key)
            state = algorithm.init(target.init(init_key))

            def body(state, step_key):
                state, info = algorithm.step(step_key, state)
                return state, (
                    state.position, state.logdensity, info.acceptance_rate, info.is_accepted
                )  # fmt: skip

            return jax.lax.scan(body, state, jax.random.split(sample_key, steps))[1]

        return jax.vmap(one_chain)(jax.random.split(key, chains))

    return jax.jit(run).lower(jax.random.key(0)).compile()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--chains", type=int, default=8)
    args = parser.parse_args()
    steps = 2_000 if args.quick else 20_000
    repeats = 3 if args.quick else args.repeats
    step_size = 0.005
    target = bw.models.get("gaussian", dim=args.dim, condition_number=100.0)
    theirs_program = blackjax_program(target, step_size, args.chains, steps)
    spec = bw.samplers.get("mala")
    config = spec.make_config(
        num_chains=args.chains, num_samples=steps, num_warmup=0, step_size=step_size
    )
    ours_program = (
        jax.jit(lambda key: spec.run(key, target, config)).lower(jax.random.key(0)).compile()
    )

    def user_path(seed: int) -> tuple[float, float, float]:
        r = bw.sample(
            target, "mala", seed=seed, num_chains=args.chains, num_samples=steps,
            num_warmup=0, step_size=step_size,
        )  # fmt: skip
        acceptance = float(r.idata.sample_stats["acceptance_rate"].mean())
        return r.cost["sample_s"], float("nan"), acceptance

    def timed(program, acceptance_of):
        def run(seed: int) -> tuple[float, float, float]:
            wall, cpu = time.perf_counter(), time.process_time()
            out = jax.block_until_ready(program(jax.random.key(seed)))
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            return wall, cpu, float(np.mean(acceptance_of(out)))

        return run

    runners = {
        "bw.sample": user_path,
        "ours": timed(ours_program, lambda draws: draws.stats["acceptance_rate"]),
        "blackjax": timed(theirs_program, lambda out: out[2]),
    }
    for run in runners.values():
        run(0)  # compile bw.sample's program, warm all
    wall: dict[str, list[float]] = {name: [] for name in runners}
    cpu: dict[str, list[float]] = {name: [] for name in runners}
    acceptance: dict[str, float] = {}
    names = list(runners)
    for repeat in range(repeats):
        for name in names[repeat % 3 :] + names[: repeat % 3]:
            seconds, cpu_seconds, acceptance[name] = runners[name](repeat + 1)
            wall[name].append(seconds)
            cpu[name].append(cpu_seconds)
    best = {name: min(values) for name, values in wall.items()}
    best_cpu = {name: min(values) for name, values in cpu.items()}
    print(
        f"mala, gaussian dim {args.dim} (condition 100), {args.chains} chains x {steps} steps, "
        f"h = {step_size}, {repeats} interleaved repeats, best of each"
    )
    for name, values in wall.items():
        print(
            f"  {name:9s} best wall {best[name] / steps * 1e6:7.2f} us/step, "
            f"cpu {best_cpu[name] / steps * 1e6:7.2f} us/step; "
            f"wall all {np.round(values, 2)} s; mean acceptance {acceptance[name]:.3f}"
        )
    for name in ("bw.sample", "ours"):
        print(
            f"  time-per-step ratio {name} / blackjax: wall {best[name] / best['blackjax']:.3f}"
            + (f", cpu {best_cpu[name] / best_cpu['blackjax']:.3f}" if name == "ours" else "")
        )
    print(
        "  (goal <= 1.05; load average at the end:",
        " ".join(f"{v:.1f}" for v in os.getloadavg()) + ")",
    )


if __name__ == "__main__":
    main()
