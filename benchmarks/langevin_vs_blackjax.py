"""Our ``mala`` against ``blackjax.mala`` run directly: same target, step size, chains,
steps and seeds; ratio of sampling time per step (compilation excluded).

Ours is the user path, ``bw.sample(target, "mala", num_warmup=0, step_size=h)`` timed by
its own ``cost["sample_s"]`` (the compiled program only; the program is cached, so repeats
do not recompile). Blackjax's is ``blackjax.mala(logdensity, h)`` stepped by a plain
``lax.scan`` over steps and ``vmap`` over chains, keeping per step what a user keeps:
position, log density, acceptance rate and is_accepted. The two are run alternately
(interleaved repeats, so that load from other processes hits both alike) and the best of
the repeats is compared.

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

    def ours(seed: int) -> tuple[float, float]:
        r = bw.sample(
            target, "mala", seed=seed, num_chains=args.chains, num_samples=steps,
            num_warmup=0, step_size=step_size,
        )  # fmt: skip
        return r.cost["sample_s"], float(r.idata.sample_stats["acceptance_rate"].mean())

    def theirs(seed: int) -> tuple[float, float]:
        start = time.perf_counter()
        out = jax.block_until_ready(theirs_program(jax.random.key(seed)))
        return time.perf_counter() - start, float(np.mean(out[2]))

    ours(0), theirs(0)  # compile ours, warm both
    times: dict[str, list[float]] = {"ours": [], "blackjax": []}
    acceptance: dict[str, float] = {}
    for repeat in range(repeats):
        order = [("ours", ours), ("blackjax", theirs)]
        for name, fn in order if repeat % 2 == 0 else order[::-1]:
            seconds, acceptance[name] = fn(repeat + 1)
            times[name].append(seconds)
    best = {name: min(values) for name, values in times.items()}
    print(
        f"mala, gaussian dim {args.dim} (condition 100), {args.chains} chains x {steps} steps, "
        f"h = {step_size}, {repeats} interleaved repeats, best of each"
    )
    for name, values in times.items():
        print(
            f"  {name:9s} best {best[name] / steps * 1e6:8.2f} us/step   "
            f"all {np.round(values, 3)} s   mean acceptance {acceptance[name]:.3f}"
        )
    print(f"  time-per-step ratio ours / blackjax = {best['ours'] / best['blackjax']:.3f}")
    print(
        "  (goal <= 1.05; load average at the end:",
        " ".join(f"{v:.1f}" for v in os.getloadavg()) + ")",
    )


if __name__ == "__main__":
    main()
