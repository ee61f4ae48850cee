"""Peak memory of a long run, all at once versus in chunks (issue: long runs in bounded memory).

Each variant runs in a fresh process (peak RSS, ``ru_maxrss``, covers one run only):
HMC with one leapfrog step on a 100-dimensional Gaussian, 4 chains x 10^6 draws (after
500 warmup steps), as

- ``whole``: one compiled program holding every draw on the device, then on the host;
- ``chunked``: ``chunk_size=10_000``: the device holds one chunk, the host the draws;
- ``chunked_thin10``: the same with ``thin=10`` (the host keeps every 10th draw);
- ``streamed``: ``chunk_size=10_000`` with ``stream=`` a temporary NetCDF file: each
  chunk is appended to the file and the Result reads it lazily, so no draws stay in memory.

The draws of 4 x 10^6 x 100 float32 alone are 1.6 GB; the run's Result holds them twice
(unconstrained ``position`` and the named posterior). Printed: peak RSS of each and its
ratio to ``whole``.

``--smc`` measures a sampler of independent runs instead: smc (MALA moves) on the same
Gaussian, 64 runs x 2^14 particles, all at once (``smc_whole``) against batches of 8 runs
(``smc_batches``, ``chunk_size=8``): the device's working set (particles, proposals,
gradients, resampling indices) is then that of 8 runs, while the Result still holds every
particle. Ratios are to ``smc_whole``.

Run: ``python benchmarks/memory.py [--draws 1000000] [--quick] [--smc]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = """
import json, os, resource, sys, tempfile, time
import bayeswb as bw
variant, draws = sys.argv[1], int(sys.argv[2])
stream = os.path.join(tempfile.mkdtemp(), "draws.nc")
hmc = {"sampler": "hmc", "num_chains": 4, "num_samples": draws, "num_warmup": 500,
       "num_integration_steps": 1}
smc = {"sampler": "smc", "num_chains": 64, "num_samples": draws, "move": "mala"}
options = {"whole": hmc, "chunked": {**hmc, "chunk_size": 10_000},
           "chunked_thin10": {**hmc, "chunk_size": 10_000, "thin": 10},
           "streamed": {**hmc, "chunk_size": 10_000, "stream": stream},
           "smc_whole": smc, "smc_batches": {**smc, "chunk_size": 8}}[variant]
start = time.perf_counter()
r = bw.sample(bw.models.get("gaussian", dim=100), seed=0, **options)
elapsed = time.perf_counter() - start
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"variant": variant, "peak_mb": peak_mb, "seconds": elapsed,
                  "kept_draws": r.positions.shape[1]}))
"""


def measure(variant: str, draws: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, variant, str(draws)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="10^5 draws (smc: 2^12)")
    parser.add_argument("--smc", action="store_true", help="smc runs, whole vs. batches")
    args = parser.parse_args()
    if args.smc:
        draws = 2**12 if args.quick else 2**14
        rows = [measure(v, draws) for v in ("smc_whole", "smc_batches")]
        print(f"smc: 64 runs x {draws} particles, dim 100 (mala moves)")
    else:
        draws = 100_000 if args.quick else args.draws
        rows = [measure(v, draws) for v in ("whole", "chunked", "chunked_thin10", "streamed")]
        print(f"4 chains x {draws} draws, dim 100 (hmc, 1 leapfrog step)")
    base = rows[0]["peak_mb"]
    print(f"{'variant':<16}{'peak RSS MB':>12}{'ratio':>8}{'kept draws':>12}{'seconds':>9}")
    for row in rows:
        print(
            f"{row['variant']:<16}{row['peak_mb']:>12.0f}{row['peak_mb'] / base:>8.2f}"
            f"{row['kept_draws']:>12}{row['seconds']:>9.1f}"
        )


if __name__ == "__main__":
    main()
