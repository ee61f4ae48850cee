"""KL(q || pi) against gradient evaluations: fbgvi against fullrank_vi on logistic_breast_cancer.

KL(q || pi) = log Z - ELBO and log Z is unknown, so the table gives the negative ELBO
(``-E_q[log pi - log q]``, from ``--draws`` draws of each fit, with its standard error):
KL up to the same constant for both methods, so differences are differences of KL.
Each budget ``B`` (gradient evaluations per fit) is spent as:

- fullrank_vi (blackjax, Adam, its defaults: learning rate 0.01, 8 draws per step):
  ``B / 8`` steps;
- fbgvi (its defaults: exact Hessians at one draw per iteration, ``d + 1 = 32`` gradient
  evaluations each, one of them for the first step): ``B / 32 - 1`` iterations.

Every fit is a separate run of ``bw.sample`` (the decaying step of fbgvi depends on its
length, so a shorter run is not a prefix of a longer one); ``--seeds`` fits per cell,
whose mean and spread are printed. Ratios are of the excess negative ELBO over the best
value in the table (a stand-in for the minimum, which is not known).

    python benchmarks/fbgvi_vs_fullrank.py [--quick] [--seeds 2] [--draws 4000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np

import bayeswb as bw
from bayeswb.core.verdict import UnreliableRunWarning

GRADS_PER_FULLRANK_STEP = 8  # fullrank_vi's default num_mc_samples


def negative_elbo(result: bw.Result) -> tuple[float, float]:
    """-ELBO of the fit and its standard error, from its draws' ``lp - log_q``."""
    stats = result.idata.sample_stats
    weights = np.ravel((stats["lp"] - stats["log_q"]).values)
    return float(-weights.mean()), float(weights.std() / np.sqrt(weights.size))


def run(
    target: bw.Target, method: str, budget: int, seed: int, draws: int
) -> tuple[float, float, int]:
    if method == "fullrank_vi":
        options = {"num_warmup": budget // GRADS_PER_FULLRANK_STEP}
    else:
        options = {"num_warmup": budget // (target.dim + 1) - 1}
    result = bw.sample(target, method, seed=seed, num_chains=1, num_samples=draws, **options)
    value, se = negative_elbo(result)
    return value, se, int(result.cost["n_grad_evals"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two budgets, one seed")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--draws", type=int, default=4000)
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    warnings.simplefilter("ignore", UnreliableRunWarning)
    target = bw.models.get("logistic_breast_cancer")
    budgets = [4000, 16000] if args.quick else [4000, 8000, 16000, 32000]
    seeds = range(1 if args.quick else args.seeds)
    rows = []
    start = time.perf_counter()
    for budget in budgets:
        for method in ("fullrank_vi", "fbgvi"):
            values = [run(target, method, budget, seed, args.draws) for seed in seeds]
            grads = {v[2] for v in values}
            assert grads == {budget}, f"{method} spent {grads} gradients, not {budget}"
            rows.append(
                {
                    "budget": budget,
                    "method": method,
                    "neg_elbo": float(np.mean([v[0] for v in values])),
                    "spread": float(np.ptp([v[0] for v in values])),
                    "se": float(np.sqrt(np.mean([v[1] ** 2 for v in values]) / len(values))),
                }
            )
    best = min(row["neg_elbo"] for row in rows)
    print(
        f"logistic_breast_cancer (d = {target.dim}): -ELBO = KL(q || pi) - log Z, "
        f"{len(seeds)} fit(s) per cell, {args.draws} draws each "
        f"({time.perf_counter() - start:.0f} s)"
    )
    print(
        f"{'grads/fit':>9} | {'fullrank_vi':>16} | {'fbgvi':>16} | "
        f"{'excess over best':>16} | {'ratio':>5}"
    )
    for budget in budgets:
        by = {row["method"]: row for row in rows if row["budget"] == budget}
        fr, fb = by["fullrank_vi"], by["fbgvi"]
        excess_fr, excess_fb = fr["neg_elbo"] - best, fb["neg_elbo"] - best
        ratio = excess_fb / excess_fr if excess_fr > 0 else float("nan")
        print(
            f"{budget:>9} | {fr['neg_elbo']:8.3f} +- {fr['se']:.3f} | "
            f"{fb['neg_elbo']:8.3f} +- {fb['se']:.3f} | "
            f"{excess_fr:7.3f} {excess_fb:8.3f} | {ratio:5.2f}"
        )
    spreads = {f"{r['budget']} {r['method']}": round(r["spread"], 3) for r in rows}
    print("spread over seeds (max - min):", spreads)
    print("ratio: fbgvi's excess -ELBO over fullrank_vi's (below 1: fbgvi closer)")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(rows, file, indent=1)


if __name__ == "__main__":
    main()
