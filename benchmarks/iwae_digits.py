"""The VAE/IWAE table on binarized digits (Burda et al. 2016, Table 1 analogue; one and two
stochastic layers) and the gradient SNR figure of Rainforth et al. (2018) for IWAE, MIWAE,
CIWAE and PIWAE.

A thin wrapper around the figure modules :mod:`bayeswb.figures.burda2015_iwae` and
:mod:`bayeswb.figures.rainforth2018_snr` (where the experiments are documented): runs them,
prints their tables, writes CSVs and plots.

Run: ``python benchmarks/iwae_digits.py [--quick] [--seed 0] [--only table|snr]
[--out /tmp/iwae_digits]``.
"""

from __future__ import annotations

import argparse
import pathlib
import time

import pandas as pd

from bayeswb.figures import burda2015_iwae, rainforth2018_snr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small CI-sized run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=("table", "snr"), help="run one of the two")
    parser.add_argument("--out", default="/tmp/iwae_digits", help="folder for plots and CSVs")
    args = parser.parse_args()
    modules = {"table": burda2015_iwae, "snr": rainforth2018_snr}
    if args.only:
        modules = {args.only: modules[args.only]}
    out = pathlib.Path(args.out)
    for name, module in modules.items():
        start = time.perf_counter()
        tables = module.compute(quick=args.quick, seed=args.seed)
        elapsed = time.perf_counter() - start
        folder = out / module.__name__.rpartition(".")[2]
        folder.mkdir(parents=True, exist_ok=True)
        print(f"\n== {module.TITLE} ({'quick' if args.quick else 'full'}, seed {args.seed})")
        with pd.option_context("display.width", 150, "display.max_rows", 500):
            results = tables["results"]
            if name == "snr":
                results = results.pivot_table(
                    index=["network", "method"], columns="K", values="snr_median"
                )
                print("median gradient SNR over parameters, by K:")
            else:
                print(results.round(3).to_string())
                results = results.pivot_table(
                    index=["layers", "method"],
                    columns="k",
                    values=["test_log_likelihood", "gain_vs_vae_k1"],
                    sort=False,
                )
                print("\ntest log-likelihood and paired gain over VAE k=1, by training k:")
            print(results.round(3).to_string())
            print("\nnext to the paper:")
            print(tables["published"].round(3).to_string(index=False))
        for table_name, table in tables.items():
            table.to_csv(folder / f"{table_name}.csv", index=False)
        paths = module.plot(tables, folder)
        print(f"{elapsed:.0f} s; written to", ", ".join(map(str, paths)))


if __name__ == "__main__":
    main()
