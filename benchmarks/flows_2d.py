"""Flows on the Rezende-Mohamed energies U1-U4: flow_vi with planar flows of K = 2, 8, 32
layers and flow_is (spline coupling, reverse KL); reverse KL (log Z - ELBO) and ESS
fraction per target and flow, and the learned densities next to the true ones.

A thin wrapper around the figure module :mod:`bayeswb.figures.rezende2015_energies` (where
the experiment and its settings are documented): runs it, prints its table, draws the plot.

Run: ``python benchmarks/flows_2d.py [--quick] [--seed 0] [--out /tmp/flows_2d]``.
"""

from __future__ import annotations

import argparse
import pathlib
import time

import pandas as pd

from bayeswb.figures import rezende2015_energies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small CI-sized run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="/tmp/flows_2d", help="folder for plot and CSVs")
    args = parser.parse_args()
    start = time.perf_counter()
    tables = rezende2015_energies.compute(quick=args.quick, seed=args.seed)
    elapsed = time.perf_counter() - start
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = tables["results"]
    with pd.option_context("display.width", 140, "display.max_rows", 100):
        print(
            f"{rezende2015_energies.TITLE} ({'quick' if args.quick else 'full'}, seed {args.seed})"
        )
        for metric in ("kl", "ess_fraction", "pareto_k_max", "log_z_error"):
            print(f"\n{metric} (rows: flow, columns: target):")
            table = results.pivot(index="method", columns="target", values=metric)
            print(table.loc[list(dict.fromkeys(results["method"]))].round(3).to_string())
        print("\nstandard error of the KL (across runs):")
        table = results.pivot(index="method", columns="target", values="kl_se")
        print(table.loc[list(dict.fromkeys(results["method"]))].round(3).to_string())
    for name, table in tables.items():
        table.to_csv(out / f"{name}.csv", index=False)
    paths = rezende2015_energies.plot(tables, out)
    print(f"\n{elapsed:.0f} s; tables and plot written to", ", ".join(map(str, paths)))


if __name__ == "__main__":
    main()
