"""The default-settings sweep: every sampler with default options on every model with
ground truth, its score against the truth beside the verdict it gave of itself.

A thin wrapper around :mod:`bayeswb.figures.defaults_matrix` (the sweep's one home): prints
the count of cells per outcome and every silent failure (bad score, verdict "fine"), and
writes the tables and the heat map into ``--out``.

    python benchmarks/defaults.py --quick
    python benchmarks/defaults.py --models gmm25,funnel --samplers smc,nuts
"""

from __future__ import annotations

import argparse
import pathlib

import pandas as pd

from bayeswb.figures import defaults_matrix as figure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a handful of cells (CI)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", default=None, help="comma-separated subset")
    parser.add_argument("--samplers", default=None, help="comma-separated subset")
    parser.add_argument("--out", default="defaults_matrix", help="folder for tables and plot")
    args = parser.parse_args()
    tables = figure.compute(
        quick=args.quick,
        seed=args.seed,
        models=args.models.split(",") if args.models else None,
        samplers=args.samplers.split(",") if args.samplers else None,
    )
    results = tables["results"]
    shown = ["model", "sampler", "seed", "mean_z_max", "log_z_error_in_se", "verdict", "outcome"]
    with pd.option_context("display.width", 200, "display.max_rows", 1000):
        print(tables["counts"].to_string(index=False))
        silent = results[results["outcome"] == "SILENT FAILURE"]
        print(f"\nsilent failures: {len(silent)}")
        if len(silent):
            print(silent.reindex(columns=shown).to_string(index=False))
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        table.to_csv(out / f"{name}.csv", index=False)
    for path in figure.plot(tables, out):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
