"""fusion, consensus and mc_fusion against full-data NUTS on logistic_breast_cancer, by number
of shards.

Every row is a default run (no option but ``num_shards``) scored against the stored
reference posterior (``bw.models.get("logistic_breast_cancer").reference``): the largest
and the root-mean-square error of the 31 posterior means, in reference posterior sds,
and the run's own verdict. Work is in full-data gradient equivalents: a sub-posterior
gradient reads about N / S of the N rows, so ``n_grad_evals / S`` in total, and
``n_grad_evals / S^2`` on each device when every shard has its own. Wall time is compile
plus sampling of this process's run (all shards on this machine's CPU, so it does not
show the speed-up of one shard per device). fusion's log Z (one estimate per run, pooled)
should agree across S: the model is the same. mc_fusion is exact for a few parameters;
its rows show what its weights do with 31.

    python benchmarks/fusion_shards.py [--quick] [--shards 2 4 8] [--runs 4] [--seed 0]
        [--samplers consensus fusion mc_fusion]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np

import bayeswb as bw
from bayeswb.core.diagnostics import verdict_label
from bayeswb.core.verdict import UnreliableRunWarning

MODEL = "logistic_breast_cancer"


def mean_errors(result: bw.Result, target: bw.Target) -> np.ndarray:
    """|posterior mean - reference mean| / reference sd of every coordinate (weighted
    draws through their weights)."""
    posterior = result.idata.posterior
    log_w = result.log_weights
    errors = []
    for name, reference in target.reference.mean.items():
        values = posterior[name].values
        values = values.reshape(values.shape[0] * values.shape[1], -1)
        if log_w is None:
            estimate = values.mean(axis=0)
        else:
            w = np.exp(np.ravel(log_w) - np.max(log_w))
            estimate = w @ values / w.sum()
        errors.append(np.abs(estimate - np.ravel(reference)) / np.ravel(target.reference.sd[name]))
    return np.concatenate(errors)


def row(target: bw.Target, sampler: str, shards: int, runs: int, seed: int) -> dict:
    options = {} if sampler == "nuts" else {"num_shards": shards}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableRunWarning)  # the verdict is a column
        result = bw.sample(target, sampler, seed=seed, num_chains=runs, progress=False, **options)
    errors = mean_errors(result, target)
    full_data = result.cost["n_grad_evals"] / shards
    return {
        "sampler": sampler,
        "shards": shards,
        "max_err_sd": float(errors.max()),
        "rms_err_sd": float(np.sqrt(np.mean(errors**2))),
        "verdict": verdict_label(result),
        "full_data_grads": full_data,
        "per_device_grads": full_data / shards,
        "wall_s": result.cost["compile_s"] + result.cost["sample_s"],
        "log_z": f"{result.log_z:.2f} ± {result.log_z_se:.2f}" if sampler == "fusion" else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 and 4 shards, 2 runs")
    parser.add_argument("--shards", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--runs", type=int, default=4, help="chains (nuts) or runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samplers", nargs="+", default=["consensus", "fusion", "mc_fusion"])
    args = parser.parse_args()
    shards, runs = ([2, 4], 2) if args.quick else (args.shards, args.runs)
    target = bw.models.get(MODEL)
    rows = [row(target, "nuts", 1, runs, args.seed)]
    for count in shards:
        rows += [row(target, name, count, runs, args.seed) for name in args.samplers]
    columns = list(rows[0])
    print(f"{MODEL}: default settings, {runs} chains or runs, seed {args.seed}")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for r in rows:
        cells = [
            f"{v:.3f}"
            if isinstance(v, float) and v < 100
            else f"{v:,.0f}"
            if isinstance(v, float)
            else str(v)
            for v in r.values()
        ]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
