"""benchmarks/gpu.py, the one command for an accelerator, runs in its quick mode."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SAMPLERS = {"nuts", "hmc", "mala", "mclmc", "mams"}  # benchmarks/overhead.py's


@pytest.mark.slow
def test_gpu_benchmark_quick_mode_writes_finite_ratios_for_every_section(tmp_path):
    out = tmp_path / "gpu.json"
    # two host devices, so that the sharded-chains section shards
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    env = os.environ | {"XLA_FLAGS": flags}
    completed = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--quick", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["quick"] and len(report["devices"]) == 2
    sections = report["sections"]
    assert set(sections) == {"overhead", "nuts_vs_numpyro", "smc_log_z", "sharded_chains"}
    assert {key.split("/")[1] for key in sections["overhead"]["ratios"]} == set(SAMPLERS)
    assert set(sections["nuts_vs_numpyro"]["ratios"]) == {"wall", "compile", "again"}
    assert set(sections["smc_log_z"]["ratios"]) == {"gmm25/vs_published_smc"}
    assert sections["sharded_chains"]["rows"][0]["devices"] == 2
    for name, section in sections.items():
        ratios = np.array(list(section["ratios"].values()), dtype=float)
        assert np.all(np.isfinite(ratios) & (ratios > 0)), (name, section["ratios"])
