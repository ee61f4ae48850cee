"""Overhead of bw.sample over calling blackjax directly, measured side by side.

The same NUTS run (same target, same window adaptation, same number of chains, warmup and
draws) once through ``bw.sample`` and once as a hand-written blackjax program, in one
process. Prints the ratio of sampling times (compile excluded; best of several repeats)
and of compile times. Target: sampling-time ratio at most 1.05.

    python benchmarks/overhead.py [--dim 50] [--chains 4] [--samples 1000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import blackjax
import jax

import bayeswb as bw


def direct_program(target: bw.Target, chains: int, warmup: int, samples: int):
    """NUTS written straight against blackjax, as a user would without bayeswb."""

    def one_chain(key):
        init_key, warmup_key, sample_key = jax.random.split(key, 3)
        adaptation = blackjax.window_adaptation(blackjax.nuts, target.log_density)
        (state, parameters), _ = adaptation.run(
            warmup_key, target.init(init_key), num_steps=warmup
        )
        kernel = blackjax.nuts(target.log_density, **parameters)

        def step(state, key):
            state, info = kernel.step(key, state)
            return state, (state.position, info.acceptance_rate)

        _, trace = jax.lax.scan(step, state, jax.random.split(sample_key, samples))
        return trace

    return jax.jit(lambda key: jax.vmap(one_chain)(jax.random.split(key, chains)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=50)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    target = bw.models.get("gaussian", dim=args.dim, condition_number=10.0)
    settings = dict(num_chains=args.chains, num_samples=args.samples, num_warmup=args.warmup)

    start = time.perf_counter()
    direct = direct_program(target, args.chains, args.warmup, args.samples)
    compiled = direct.lower(jax.random.key(0)).compile()
    direct_compile = time.perf_counter() - start

    first = bw.sample(target, "nuts", seed=0, **settings)
    workbench_compile = first.cost["compile_s"]

    direct_times, workbench_times, program_times = [], [], []
    for repeat in range(args.repeats):
        # interleave the two so that machine noise hits both alike
        start = time.perf_counter()
        jax.block_until_ready(compiled(jax.random.key(repeat)))
        direct_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        r = bw.sample(target, "nuts", seed=repeat, **settings)
        workbench_times.append(time.perf_counter() - start)
        program_times.append(r.cost["sample_s"])
        assert r.cost["compile_s"] == 0.0

    program_ratio = min(program_times) / min(direct_times)
    call_ratio = min(workbench_times) / min(direct_times)
    print(
        f"NUTS on gaussian(dim={args.dim}), {args.chains} chains x "
        f"({args.warmup} warmup + {args.samples} draws), best of {args.repeats}"
    )
    print(f"  sampling: bw.sample program {min(program_times):.3f}s (cost['sample_s'])")
    print(f"            bw.sample call    {min(workbench_times):.3f}s (with InferenceData)")
    print(f"            blackjax          {min(direct_times):.3f}s")
    print(f"  compile:  bw.sample {workbench_compile:.3f}s, blackjax {direct_compile:.3f}s")
    print(f"sampling-time ratio bw/blackjax: {program_ratio:.3f}  (target <= 1.05)")
    print(f"whole-call ratio    bw/blackjax: {call_ratio:.3f}  (adds ArviZ conversion)")
    print(f"compile-time ratio  bw/blackjax: {workbench_compile / direct_compile:.3f}")


if __name__ == "__main__":
    main()
