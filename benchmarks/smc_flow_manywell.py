"""smc_flow versus smc on manywell (dim 32): |delta log Z| at equal gradient evaluations.

smc_flow (a flow trained by reverse KL, then annealed Langevin SMC from the flow) runs
first; its gradient evaluations per run (training included) set the budget. smc then gets
the same budget per run: a pilot smc run measures its gradients per particle, and the
particle count is scaled to match (the number of temperatures barely depends on N).
Reported per sampler: mean and standard error over runs of |log Z_r - log Z|, the pooled
error, and the gradients per run actually used (the ratio to smc_flow's is printed).

    python benchmarks/smc_flow_manywell.py --quick
    python benchmarks/smc_flow_manywell.py --runs 8
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

import bayeswb as bw

SMC = {"reference_scale": 2.0, "target_conditional_ess": 0.95, "move": "hmc", "num_mcmc_steps": 3}
SMC_FLOW = {
    "num_samples": 2048,
    "num_warmup": 1000,
    "num_layers": 4,
    "hidden_width": 32,
    "num_mc_samples": 32,
    "learning_rate": 2e-3,
    "init_scale": 2.0,  # as wide as smc's reference
}
QUICK_FLOW = {"num_samples": 128, "num_warmup": 50, "num_layers": 2, "hidden_width": 16,
              "num_mc_samples": 8, "pilot_particles": 64}  # fmt: skip


def row(name: str, target: bw.Target, result: bw.Result, seconds: float) -> dict:
    log_z = np.asarray(result.idata.sample_stats["log_marginal_likelihood"].values).ravel()
    errors = np.abs(log_z - target.log_z)
    return {
        "sampler": name,
        "particles": result.positions.shape[1],
        "abs_delta_log_z_mean": errors.mean(),
        "abs_delta_log_z_se": errors.std(ddof=1) / np.sqrt(errors.size),
        "pooled_error": result.log_z - target.log_z,
        "grad_evals_per_run": result.cost["n_grad_evals"] / errors.size,
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings")
    parser.add_argument("--runs", type=int, default=8, help="independent runs per sampler")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    runs = 2 if args.quick else args.runs
    target = bw.models.get("manywell", dim=32)
    flow_options = {**SMC_FLOW, **(QUICK_FLOW if args.quick else {})}
    start = time.perf_counter()
    flow = bw.sample(target, "smc_flow", seed=args.seed, num_chains=runs, **flow_options)
    rows = [row("smc_flow", target, flow, time.perf_counter() - start)]
    budget = rows[0]["grad_evals_per_run"]
    pilot_n = 64 if args.quick else 512
    pilot = bw.sample(target, "smc", seed=args.seed + 1, num_chains=1, num_samples=pilot_n, **SMC)
    per_particle = pilot.cost["n_grad_evals"] / pilot_n
    particles = max(16, int(budget / per_particle))
    start = time.perf_counter()
    smc = bw.sample(
        target, "smc", seed=args.seed + 2, num_chains=runs, num_samples=particles, **SMC
    )
    rows.append(row("smc", target, smc, time.perf_counter() - start))
    table = pd.DataFrame(rows)
    table["budget_ratio"] = table["grad_evals_per_run"] / budget
    print(f"manywell dim 32, log Z = {target.log_z:.4f}, {runs} runs per sampler")
    print(table.to_string(index=False, float_format="{:.4g}".format))


if __name__ == "__main__":
    main()
