"""|delta log Z| and sliced Wasserstein on gmm25, funnel (10, 3) and manywell (32) for smc,
ais, smc_langevin, smc_flow and flow_is, beside Sendera et al. (2024), Table 1.

Each sampler runs twice per target: with its tuned settings (``options = "tuned"``, each
with a ``how_found`` note) and with its defaults (``options = "auto"``).

A thin wrapper around :mod:`bayeswb.figures.sendera2024_logz` (the experiment's one home):
prints the ``results`` and ``published`` tables and writes the figure into ``--out``.

    python benchmarks/smc_log_z.py --quick
    python benchmarks/smc_log_z.py --samplers smc --out /tmp/smc_log_z
"""

from __future__ import annotations

import argparse
import pathlib

import pandas as pd

from bayeswb.figures import sendera2024_logz as figure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings (CI)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samplers", default=None, help="comma-separated subset, e.g. smc")
    parser.add_argument("--out", default="/tmp/smc_log_z", help="folder for the figure")
    args = parser.parse_args()
    samplers = tuple(args.samplers.split(",")) if args.samplers else None
    tables = figure.compute(quick=args.quick, seed=args.seed, samplers=samplers)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        for name, table in tables.items():
            print(f"\n{name}\n{table.to_string(index=False, float_format='{:.4g}'.format)}")
    paths = figure.plot(tables, pathlib.Path(args.out))
    print("\nwrote", ", ".join(map(str, paths)))


if __name__ == "__main__":
    main()
