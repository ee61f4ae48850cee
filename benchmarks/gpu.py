"""The benchmarks of an accelerator in one command: overhead over blackjax, NUTS against
NumPyro, SMC log Z and sharded chains, on whatever devices JAX sees, into one JSON of
ratios.

Each section is one of the side-by-side benchmarks of this folder, run in this process on
``jax.devices()`` (a GPU or TPU when JAX has one; the CPU otherwise):

- ``overhead`` (benchmarks/overhead.py): bw.sample against blackjax used directly and
  against a bare gradient loop, per (target, sampler): ``vs_blackjax``, ``vs_bare``;
- ``nuts_vs_numpyro`` (benchmarks/nuts_vs_numpyro.py): bw/numpyro wall, compile and
  second-run time summed over the registry's numpyro models;
- ``smc_log_z``: smc with default options (the ``auto`` cells of
  :mod:`bayeswb.figures.sendera2024_logz`) on gmm25, funnel and manywell: mean
  |delta log Z| over runs divided by the published SMC baseline of Sendera et al. (2024,
  Table 1): below 1 beats it;
- ``sharded_chains``: MALA chains on a 100-d Gaussian spread over all devices against
  the same chains on one device, sampling time (compile excluded): ``all_over_one``
  (1 when there is one device).

``--quick`` shrinks every section (one small target, 100 warmup steps, one model, gmm25
with 4 runs of 128 particles, 64 short chains) so that it runs in the test suite on a CPU.
A JSON file ``{"devices": ..., "quick": ..., "sections": {name: {"ratios": {...},
"rows": [...]}}}`` is written to ``--out``.

    python benchmarks/gpu.py [--quick] [--out gpu.json]
"""

from __future__ import annotations

import argparse
import json
import warnings

import jax
import numpy as np
import nuts_vs_numpyro
import overhead

import bayeswb as bw
from bayeswb.core.verdict import UnreliableRunWarning
from bayeswb.figures import sendera2024_logz


def overhead_section(quick: bool) -> dict:
    rows = overhead.measure(quick=quick, report=False)
    ratios = {
        f"{row['target']}/{row['sampler']}/vs_{limit}": row[f"vs_{limit}"]
        for row in rows
        for limit in ("blackjax", "bare")
    }
    return {"ratios": ratios, "rows": rows}


def nuts_section(quick: bool) -> dict:
    models = list(nuts_vs_numpyro.MODELS[:1] if quick else nuts_vs_numpyro.MODELS)
    measured = nuts_vs_numpyro.measure(models, 100 if quick else 1000, report=False)
    return {"ratios": measured["ratios"], "rows": measured["rows"]}


def smc_section(quick: bool) -> dict:
    by_target = sendera2024_logz.auto_settings(quick)
    rows, ratios = [], {}
    for target, by_sampler in by_target.items():
        row = sendera2024_logz.run_one(target, "smc", by_sampler["smc"], seed=0)
        rows.append(row)
        published = sendera2024_logz.PUBLISHED_SMC[target]
        ratios[f"{target}/vs_published_smc"] = row["abs_delta_log_z_mean"] / published
    return {"ratios": ratios, "rows": rows}


def sharded_section(quick: bool) -> dict:
    devices = jax.devices()
    chains = 8 * len(devices) if quick else 64 * len(devices)
    steps = 200 if quick else 5000
    target = bw.models.get("gaussian", dim=100)
    settings = dict(num_chains=chains, num_samples=steps, num_warmup=0, step_size=0.1)
    times = {}
    for label, used in (("all", devices), ("one", devices[:1])):
        bw.sample(target, "mala", seed=0, devices=used, **settings)  # compiles
        again = bw.sample(target, "mala", seed=0, devices=used, **settings)
        times[label] = again.cost["sample_s"]
    row = {"devices": len(devices), "chains": chains, "steps": steps, **times}
    return {"ratios": {"all_over_one": times["all"] / times["one"]}, "rows": [row]}


SECTIONS = {
    "overhead": overhead_section,
    "nuts_vs_numpyro": nuts_section,
    "smc_log_z": smc_section,
    "sharded_chains": sharded_section,
}


def run(quick: bool) -> dict:
    """Every section of :data:`SECTIONS`; the JSON-ready report."""
    warnings.simplefilter("ignore", UnreliableRunWarning)
    sections = {}
    for name, section in SECTIONS.items():
        sections[name] = section(quick)
        shown = ", ".join(f"{k} {v:.3f}" for k, v in sections[name]["ratios"].items())
        print(f"{name}: {shown}", flush=True)
    devices = [str(device) for device in jax.devices()]
    return {"devices": devices, "quick": quick, "sections": sections}


def _plain(value: object) -> object:
    """JSON for numpy scalars and arrays inside the rows."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON: {type(value).__name__}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sections (CI on a CPU)")
    parser.add_argument("--out", default="gpu.json", help="the JSON file of ratios")
    args = parser.parse_args()
    report = run(args.quick)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1, default=_plain)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
