"""The double-well experiment of Wu, Koehler and Noe (2020), "Stochastic Normalizing Flows":
bias of the free-energy profile along x1 (kT) before and after reweighting, for a RealNVP
flow alone and flows with Metropolis blocks, next to the paper's Table 1.

A thin wrapper around :mod:`bayeswb.figures.wu2020_double_well` (the experiment's one home).

    python benchmarks/snf_double_well.py --quick
    python benchmarks/snf_double_well.py --out /tmp/snf_double_well
    python benchmarks/snf_double_well.py --runs 10 --steps 600 --samples 300000
"""

from __future__ import annotations

import argparse
import pathlib
import time

import pandas as pd

from bayeswb.figures import wu2020_double_well as experiment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (CI size)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="/tmp/snf_double_well", help="figure directory")
    parser.add_argument("--runs", type=int, help="independent runs per setting")
    parser.add_argument("--steps", type=int, help="training steps per run")
    parser.add_argument("--samples", type=int, help="paths drawn per run")
    args = parser.parse_args()
    sizes = {
        key: value
        for key, value in (
            ("num_runs", args.runs),
            ("num_warmup", args.steps),
            ("num_samples", args.samples),
        )
        if value is not None
    }
    start = time.perf_counter()
    tables = experiment.compute(quick=args.quick, seed=args.seed, sizes=sizes)
    elapsed = time.perf_counter() - start
    with pd.option_context("display.width", 160, "display.max_columns", 40):
        summary = tables["summary"]
        columns = ["setting"] + [
            f"{metric}_{kind}_{stat}"
            for metric in ("bias", "mean_abs_diff")
            for kind in ("unweighted", "reweighted")
            for stat in ("mean", "std")
        ]
        columns += ["ess_fraction_mean", "log_z_error_mean", "log_z_error_std"]
        print(summary[columns].round(3).to_string(index=False))
        print()
        print(tables["published"].round(3).to_string(index=False))
    paths = experiment.plot(tables, pathlib.Path(args.out))
    print(f"\nelapsed {elapsed:.0f} s; figure: {', '.join(map(str, paths))}")


if __name__ == "__main__":
    main()
