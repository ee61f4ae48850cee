"""NUTS through bw.sample against NumPyro's NUTS, side by side, on the registry's numpyro
models.

Same model, same settings (4 chains, 1000 warmup + 1000 draws, diagonal mass matrix,
target acceptance 0.8, tree depth 10), NumPyro with ``chain_method="vectorized"`` (its
batched chains, as bw runs them), both in this process with the persistent compilation
cache off, so that both compile from scratch. For each model:

- wall time of the first run, and within it the time XLA spent lowering and compiling
  (JAX's own duration events: ``jaxpr_to_mlir_module`` and ``backend_compile``; tracing
  is left out, as its events nest);
- wall time of a second run of the same job in the same process (bw reuses its compiled
  program; NumPyro's ``MCMC.run`` compiles parts of it again);
- accuracy: the largest |posterior mean - reference mean| / reference sd over parameters,
  against the model's stored reference posterior (both should be within a few MCSE).

Ratios bw/numpyro above 1 mean bw is slower. Goals (issue 20): wall time at most 1.0, and
compile time at most half of NumPyro's.

    python benchmarks/nuts_vs_numpyro.py [--models eight_schools_noncentered ...] [--quick]
"""

from __future__ import annotations

import argparse
import time
import warnings

import jax
import numpy as np
from jax._src import dispatch, monitoring
from numpyro.infer import MCMC, NUTS

import bayeswb as bw
from bayeswb.core.verdict import UnreliableRunWarning

MODELS = (
    "eight_schools_noncentered",
    "eight_schools_centered",
    "logistic_breast_cancer",
    "gp_regression",
    "horseshoe_diabetes",
    "stochastic_volatility",
    "brownian_motion",
    "bnn_classification",
)


COMPILE_EVENTS = (dispatch.JAXPR_TO_MLIR_MODULE_EVENT, dispatch.BACKEND_COMPILE_EVENT)
_compile_seconds = [0.0]


def _count_compile(event: str, duration: float, **_: object) -> None:
    if event in COMPILE_EVENTS:
        _compile_seconds[0] += duration


monitoring.register_event_duration_secs_listener(_count_compile)


def mean_error(means: dict[str, np.ndarray], target: bw.Target) -> float:
    """Largest |mean - reference mean| / reference sd over the reference's parameters."""
    ref = target.reference
    if ref is None:
        return float("nan")
    worst = 0.0
    for name, ref_mean in ref.mean.items():
        if name in means:
            error = np.abs(np.asarray(means[name]) - ref_mean) / np.asarray(ref.sd[name])
            worst = max(worst, float(np.max(error)))
    return worst


def run_bw(name: str, settings: dict) -> dict:
    target = bw.models.get(name)
    _compile_seconds[0] = 0.0
    start = time.perf_counter()
    first = bw.sample(target, "nuts", seed=0, **settings)
    first_s = time.perf_counter() - start
    compile_s = _compile_seconds[0]
    start = time.perf_counter()
    bw.sample(target, "nuts", seed=1, **settings)  # the same job, compiled already
    second_s = time.perf_counter() - start
    means = {k: v.mean(("chain", "draw")).values for k, v in first.idata.posterior.items()}
    return {
        "first_s": first_s,
        "compile_s": compile_s,
        "second_s": second_s,
        "error": mean_error(means, target),
    }


def run_numpyro(name: str, settings: dict) -> dict:
    target = bw.models.get(name)
    model = target.numpyro
    mcmc = MCMC(
        NUTS(model.model, target_accept_prob=0.8, max_tree_depth=10),
        num_warmup=settings["num_warmup"],
        num_samples=settings["num_samples"],
        num_chains=settings["num_chains"],
        chain_method="vectorized",
        progress_bar=False,
    )
    _compile_seconds[0] = 0.0
    start = time.perf_counter()
    mcmc.run(jax.random.key(0), *model.args, **model.kwargs)
    jax.block_until_ready(mcmc.get_samples())
    first_s = time.perf_counter() - start
    compile_s = _compile_seconds[0]
    means = {k: np.asarray(v).mean(0) for k, v in mcmc.get_samples().items()}
    start = time.perf_counter()
    mcmc.run(jax.random.key(1), *model.args, **model.kwargs)
    jax.block_until_ready(mcmc.get_samples())
    second_s = time.perf_counter() - start
    return {
        "first_s": first_s,
        "compile_s": compile_s,
        "second_s": second_s,
        "error": mean_error(means, target),
    }


def measure(models: list[str], steps: int, report: bool = True) -> dict:
    """Both NUTS on each of ``models`` (4 chains x (steps + steps)), printed as a table when
    ``report``: ``{"rows": [...], "ratios": {"wall", "compile", "again"}}``, the ratios
    bw/numpyro of the times summed over the models."""
    settings = dict(num_chains=4, num_warmup=steps, num_samples=steps)
    bw.set_compile_cache(None)  # both compile from scratch
    warnings.simplefilter("ignore", UnreliableRunWarning)
    columns = ("wall", "compile", "again")
    if report:
        print(
            f"NUTS, 4 chains x ({steps} warmup + {steps} draws); times in s; error = max "
            "|mean - ref| / ref sd"
        )
        heads = "".join(f" {c + ' bw':>10} {c + ' np':>10} {'ratio':>6}" for c in columns)
        print(f"{'model':26}{heads} {'bw err':>6} {'np err':>6}")
    totals = {c: np.zeros(2) for c in columns}
    rows = []
    for name in models:
        ours, theirs = run_bw(name, settings), run_numpyro(name, settings)
        rows.append({"model": name, "bw": ours, "numpyro": theirs})
        line = f"{name:26}"
        for column, key in zip(columns, ("first_s", "compile_s", "second_s"), strict=True):
            pair = np.array([ours[key], theirs[key]])
            totals[column] += pair
            line += f" {pair[0]:>10.2f} {pair[1]:>10.2f} {pair[0] / pair[1]:>6.2f}"
        if report:
            print(line + f" {ours['error']:>6.3f} {theirs['error']:>6.3f}", flush=True)
    ratios = {c: float(t[0] / t[1]) for c, t in totals.items()}
    if report:
        print(
            f"summed over the models, bw/numpyro: wall {ratios['wall']:.2f} (goal <= 1.0), "
            f"compile {ratios['compile']:.2f} (goal <= 0.5), second run {ratios['again']:.2f}"
        )
    return {"rows": rows, "ratios": ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--quick", action="store_true", help="100 warmup + 100 draws")
    args = parser.parse_args()
    measure(args.models, 100 if args.quick else 1000)


if __name__ == "__main__":
    main()
