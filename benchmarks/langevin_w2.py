"""W2 against gradient evaluations for ula, kinetic_langevin (Euler, BAOAB) and
randomized_midpoint on a 100-dimensional Gaussian of condition number 100.

A thin wrapper around the figure module :mod:`bayeswb.figures.langevin_w2` (where the
experiment and its protocol are documented): runs it, prints its tables, draws the plot.

Run: ``python benchmarks/langevin_w2.py [--quick] [--seed 0] [--out /tmp/langevin_w2]``.
"""

from __future__ import annotations

import argparse
import pathlib
import time

import pandas as pd

from bayeswb.figures import langevin_w2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small CI-sized run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="/tmp/langevin_w2", help="folder for plot and CSVs")
    args = parser.parse_args()
    start = time.perf_counter()
    tables = langevin_w2.compute(quick=args.quick, seed=args.seed)
    elapsed = time.perf_counter() - start
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with pd.option_context("display.width", 120, "display.max_rows", 500):
        frontier = tables["frontier"].pivot(index="method", columns="grads_per_chain", values="w2")
        steps = tables["frontier"].pivot(
            index="method", columns="grads_per_chain", values="step_size"
        )
        print(f"{langevin_w2.TITLE} ({'quick' if args.quick else 'full'}, seed {args.seed})")
        print("\nW2 at the best step of the grid, per gradient evaluations per chain:")
        print(frontier.round(3).to_string())
        print("\nthe step that achieved it:")
        print(steps.to_string())
        print("\ngradient evaluations per chain to reach each W2 level (NaN: not reached):")
        print(tables["reach"].pivot(index="method", columns="w2_level").to_string())
    for name, table in tables.items():
        table.to_csv(out / f"{name}.csv", index=False)
    paths = langevin_w2.plot(tables, out)
    print(f"\n{elapsed:.0f} s; tables and plot written to", ", ".join(map(str, paths)))


if __name__ == "__main__":
    main()
