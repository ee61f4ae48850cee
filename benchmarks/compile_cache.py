"""What the persistent compilation cache saves: the same job run twice, first against an
empty cache folder and then against the folder the first run filled.

Jobs (each a fresh process, ``BAYESWB_CACHE_DIR`` set to a new temporary folder):

- ``cli``: ``bayeswb run funnel nuts`` (the README's NUTS example);
- ``notebook``: notebooks/01_quickstart.ipynb executed by nbclient (its quick settings);
- ``new_target``: in one process, ``bw.sample`` on a funnel Target, then on a second
  Target object built from the same model, which JAX traces again but need not compile;
- ``numpyro_target``: building the logistic_breast_cancer Target, timed inside two
  processes (numpyro's ``initialize_model`` and the minibatch checks run the model
  operation by operation, about 80 small programs, which ``bayeswb/core/target.py``
  caches although each compiles in far less than the cache's usual threshold).

Prints wall seconds of the first and second run and their ratio (goal in issue 20: 3x).
Wall time includes the Python start and ``import bayeswb`` (about 5 s here), which no
cache removes. Run: ``python benchmarks/compile_cache.py [--jobs cli ...]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = f"""
import nbformat
from nbclient import NotebookClient
nb = nbformat.read({str(ROOT / "notebooks" / "01_quickstart.ipynb")!r}, as_version=4)
NotebookClient(nb, timeout=1200, kernel_name="python3").execute()
"""
NEW_TARGET = """
import sys, time
import bayeswb as bw
for name in ("first", "second"):
    start = time.perf_counter()
    bw.sample(bw.models.get("funnel"), "nuts", seed=0)
    print(name, time.perf_counter() - start, flush=True)
"""
NUMPYRO_TARGET = """
import time
import bayeswb as bw
from bayeswb.core import result  # ArviZ and the samplers imported before the clock starts
start = time.perf_counter()
bw.models.get("logistic_breast_cancer")
print(time.perf_counter() - start)
"""
JOBS = {
    "cli": [sys.executable, "-m", "bayeswb.cli", "run", "funnel", "nuts"],
    "notebook": [sys.executable, "-c", NOTEBOOK],
}


def timed(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])} failed:\n{out.stderr[-2000:]}")
    return time.perf_counter() - start, out.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    jobs = ["cli", "notebook", "new_target", "numpyro_target"]
    parser.add_argument("--jobs", nargs="+", default=jobs)
    args = parser.parse_args()
    for job in args.jobs:
        env = dict(os.environ, BAYESWB_QUICK="1", MPLBACKEND="Agg")
        env["BAYESWB_CACHE_DIR"] = tempfile.mkdtemp(prefix="bayeswb-cache-")
        if job == "new_target":  # two Target objects in one process, empty cache
            _, stdout = timed([sys.executable, "-c", NEW_TARGET], env)
            seconds = dict(line.split() for line in stdout.splitlines() if line)
            first, second = float(seconds["first"]), float(seconds["second"])
        elif job == "numpyro_target":  # the build alone, in two processes
            command = [sys.executable, "-c", NUMPYRO_TARGET]
            first, second = (float(timed(command, env)[1].split()[-1]) for _ in range(2))
        else:
            first = timed(JOBS[job], env)[0]
            second = timed(JOBS[job], env)[0]
        ratio = first / second
        print(f"{job:12s} first {first:6.1f} s  second {second:6.1f} s  ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
