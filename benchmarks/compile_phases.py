"""Where the time of a first NUTS run goes, phase by phase, on the registry's numpyro models.

For each model (benchmarks/nuts_vs_numpyro.py's list), in one process with the persistent
compilation cache off, the model's Target is built and ``bw.sample(target, "nuts",
num_chains=4, num_samples=1000, num_warmup=1000)`` runs once. Its wall time is split into:

- ``target``: building the Target (the numpyro model traced, its data, its checks);
- ``program``: the sampler's one program (warmup and sampling together): JAX tracing,
  lowering to MLIR, XLA compiling, then running it and turning its draws into a Result;
- ``peak``: the verdict's density-peak search (:mod:`bayeswb.execution.peak_search`), a
  program of its own, compiled and run;
- ``arviz``: the numpyro groups of the InferenceData (log likelihood, observed data);
- ``other``: the rest of ``bw.sample`` (the target's fingerprint check, small eager
  operations, conversion of the draws, the verdict).

Tracing, lowering and compile seconds come from JAX's monitoring events, attributed to
the phase running when they fire; phases are delimited by wrapping the functions
``bw.sample`` calls for them. Times are wall seconds on this machine (noisy on a busy
one): read the shares, not the absolute numbers.

Run: ``python benchmarks/compile_phases.py [--models eight_schools_noncentered ...]``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import time
import warnings

os.environ["BAYESWB_CACHE_DIR"] = "off"  # every program compiled, none read from disk

import nuts_vs_numpyro
from jax._src import dispatch, monitoring

import bayeswb as bw
from bayeswb.core.verdict import UnreliableRunWarning
from bayeswb.execution import sample as sample_module

EVENTS = {
    dispatch.JAXPR_TRACE_EVENT: "trace",
    dispatch.JAXPR_TO_MLIR_MODULE_EVENT: "lower",
    dispatch.BACKEND_COMPILE_EVENT: "compile",
}
WRAPPED = {"sample_whole": "program", "record_density_peak": "peak", "add_numpyro_groups": "arviz"}
PHASES = ("target", "program", "peak", "arviz", "other")

_phase = ["other"]
_seconds: collections.Counter = collections.Counter()


def _listen(event: str, duration: float, **_: object) -> None:
    if event in EVENTS:
        _seconds[(_phase[0], EVENTS[event])] += duration


@contextlib.contextmanager
def _in_phase(phase: str):
    outer, _phase[0] = _phase[0], phase
    start = time.perf_counter()
    try:
        yield
    finally:
        _seconds[(phase, "wall")] += time.perf_counter() - start
        _phase[0] = outer


def _wrap(name: str, phase: str) -> None:
    function = getattr(sample_module, name)

    def wrapped(*args, **kwargs):
        with _in_phase(phase):
            return function(*args, **kwargs)

    setattr(sample_module, name, wrapped)


def measure(model: str) -> dict[str, float]:
    """Seconds per (phase, kind) of the first NUTS run on ``model``, kind one of wall,
    trace, lower and compile; ``other`` is the rest of ``bw.sample``'s wall time."""
    _seconds.clear()
    with _in_phase("target"):
        target = bw.models.get(model)
    start = time.perf_counter()
    bw.sample(target, "nuts", seed=0, num_chains=4, num_samples=1000, num_warmup=1000)
    total = time.perf_counter() - start
    inner = sum(_seconds[(phase, "wall")] for phase in ("program", "peak", "arviz"))
    _seconds[("other", "wall")] += total - inner
    return {f"{phase}/{kind}": seconds for (phase, kind), seconds in _seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(nuts_vs_numpyro.MODELS))
    args = parser.parse_args()
    warnings.simplefilter("ignore", UnreliableRunWarning)
    monitoring.register_event_duration_secs_listener(_listen)
    for name, phase in WRAPPED.items():
        _wrap(name, phase)
    header = "".join(f"{phase:>24}" for phase in PHASES)
    print(f"{'model':<28}{header}{'total':>8}")
    print(f"{'':<28}" + f"{'wall (trace/lower/XLA)':>24}" * len(PHASES))
    for model in args.models:
        seconds = measure(model)
        cells = []
        for phase in PHASES:
            split = "/".join(f"{seconds.get(f'{phase}/{k}', 0.0):.1f}" for k in EVENTS.values())
            cells.append(f"{seconds.get(f'{phase}/wall', 0.0):.1f} ({split})")
        total = sum(seconds.get(f"{phase}/wall", 0.0) for phase in PHASES)
        print(f"{model:<28}" + "".join(f"{cell:>24}" for cell in cells) + f"{total:>8.1f}")


if __name__ == "__main__":
    main()
