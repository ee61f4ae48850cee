"""Langevin family benchmarks, each measured side by side in one process.

1. ``w2``: on a 100-dimensional Gaussian with condition number 100, the exact 2-Wasserstein
   distance between the Gaussian fitted to a chain's draws (pooled over chains) and the
   target, against the number of gradient evaluations per chain, for ``ula``,
   ``kinetic_langevin`` (Euler, BAOAB) and ``randomized_midpoint``; each sampler at the
   step of one grid (the same for all) giving the lowest W2 at the largest budget; each
   budget B is the prefix of one long run, its first half discarded as burn-in. Printed
   as a table, saved as a plot.
2. ``mala``: our ``mala`` (no warmup, fixed step) against ``blackjax.mala`` driven by a
   plain ``lax.scan`` and ``vmap``, same target, step, chains and steps: ratio of
   sampling time per step (compilation excluded), best of several repeats each.

Run: ``python benchmarks/langevin.py [w2|mala] [--plot langevin_w2.png]``.
"""

from __future__ import annotations

import argparse
import time

import blackjax
import jax
import numpy as np
import scipy.linalg

import bayeswb as bw


def gaussian_w2(mean: np.ndarray, cov: np.ndarray, target_var: np.ndarray) -> float:
    """Exact W2 between N(mean, cov) and N(0, diag(target_var))."""
    root = np.sqrt(target_var)
    cross = scipy.linalg.sqrtm(root[:, None] * cov * root[None, :]).real
    squared = mean @ mean + np.trace(cov) + target_var.sum() - 2.0 * np.trace(cross)
    return float(np.sqrt(max(squared, 0.0)))


def w2_benchmark(plot: str | None, seed: int = 0) -> None:
    target = bw.models.get("gaussian", dim=100, condition_number=100.0)
    target_var = np.asarray(target.reference.sd["x"]) ** 2
    chains, budgets = 8, [250, 500, 1000, 2000, 4000, 8000]
    methods = {
        "ula": ("ula", {}, 1),
        "kinetic euler": ("kinetic_langevin", {"integrator": "euler"}, 1),
        "kinetic baoab": ("kinetic_langevin", {"integrator": "baoab"}, 1),
        "randomized midpoint": ("randomized_midpoint", {}, 2),
    }
    # the smallest sd is 0.1 (curvature 100); steps relative to it
    step_grid = [0.005, 0.01, 0.015, 0.05, 0.1]
    rows: dict[str, tuple[float, list[float]]] = {}
    for label, (name, options, grads_per_step) in methods.items():
        best = None
        for step_size in step_grid:
            # one run per step size; the run of B gradients is its prefix: B/2 steps
            # discarded as burn-in (warmup is burn-in for these fixed-step samplers)
            result = bw.sample(
                target, name, seed=seed, num_chains=chains, num_warmup=0,
                num_samples=budgets[-1] // grads_per_step, step_size=step_size, **options,
            )  # fmt: skip
            draws = result.idata.posterior["x"].values
            errors = []
            for budget in budgets:
                steps = budget // grads_per_step
                x = draws[:, steps // 2 : steps].reshape(-1, target.dim)
                finite = np.isfinite(x).all() and np.abs(x).max() < 1e6
                errors.append(
                    gaussian_w2(x.mean(0), np.cov(x.T), target_var) if finite else np.inf
                )
            if np.all(np.isfinite(errors)) and (best is None or errors[-1] < best[1][-1]):
                best = (step_size, errors)
        rows[label] = best
    print("W2 to the target (gaussian dim 100, condition 100) against gradient evaluations")
    print("per chain (half warmup, half draws; best step of", step_grid, "at the largest budget)")
    print(f"{'method':22s} {'step':>6s} " + " ".join(f"{b:>8d}" for b in budgets))
    for label, (step_size, errors) in rows.items():
        print(f"{label:22s} {step_size:6.3f} " + " ".join(f"{e:8.3f}" for e in errors))
    if plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5))
        for label, (step_size, errors) in rows.items():
            ax.loglog(budgets, errors, "o-", label=f"{label} (h={step_size})")
        ax.set_xlabel("gradient evaluations per chain")
        ax.set_ylabel("W2 of Gaussian fit to target")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(plot, dpi=120)
        print("plot saved to", plot)


def mala_benchmark(repeats: int = 5, seed: int = 0) -> None:
    target = bw.models.get("gaussian", dim=100, condition_number=100.0)
    chains, steps, step_size = 8, 20_000, 0.005

    def blackjax_run(key: jax.Array) -> jax.Array:
        algorithm = blackjax.mala(target.log_density, step_size)

        def one_chain(chain_key: jax.Array) -> jax.Array:
            init_key, sample_key = jax.random.split(chain_key)
            state = algorithm.init(target.init(init_key))

            def body(state, step_key):
                state, info = algorithm.step(step_key, state)
                return state, (state.position, state.logdensity, info.acceptance_rate)

            return jax.lax.scan(body, state, jax.random.split(sample_key, steps))[1]

        return jax.vmap(one_chain)(jax.random.split(key, chains))

    compiled = jax.jit(blackjax_run).lower(jax.random.key(seed)).compile()
    jax.block_until_ready(compiled(jax.random.key(seed)))
    ours, theirs = [], []
    for repeat in range(repeats):
        # interleave the two so that machine load affects both alike
        start = time.perf_counter()
        jax.block_until_ready(compiled(jax.random.key(seed + repeat)))
        theirs.append(time.perf_counter() - start)
        result = bw.sample(
            target, "mala", seed=seed + repeat, num_chains=chains, num_samples=steps,
            num_warmup=0, step_size=step_size,
        )  # fmt: skip
        ours.append(result.cost["sample_s"])
    ratio = min(ours) / min(theirs)
    print(f"mala vs blackjax.mala: dim 100, {chains} chains x {steps} steps, h={step_size}")
    print(f"  ours     best {min(ours) / steps * 1e6:8.2f} us/step  (all {np.round(ours, 3)})")
    print(f"  blackjax best {min(theirs) / steps * 1e6:8.2f} us/step  (all {np.round(theirs, 3)})")
    print(f"  time-per-step ratio ours/blackjax = {ratio:.3f} (goal <= 1.05)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", nargs="?", choices=["w2", "mala", "all"], default="all")
    parser.add_argument("--plot", default="langevin_w2.png")
    args = parser.parse_args()
    if args.which in ("mala", "all"):
        mala_benchmark()
    if args.which in ("w2", "all"):
        w2_benchmark(args.plot)


if __name__ == "__main__":
    main()
