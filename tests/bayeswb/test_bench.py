"""bayeswb bench: equal-budget sweeps that report failures as rows."""

import bayeswb as bw
from bayeswb.bench import bench, write_report


def test_bench_scores_pairs_at_an_equal_budget_and_reports_failures(tmp_path):
    def broken(x):
        raise RuntimeError("this target cannot be evaluated")

    failing = bw.Target.from_logdensity(broken, dim=2, name="broken")
    frame = bench(
        ["gaussian", failing],
        ["hmc", "pathfinder"],
        budget=3e4,
        seeds=[0, 1],
        num_chains=2,
        pilot_samples=50,
    )
    assert len(frame) == 8
    ok = frame[frame["model"] == "gaussian"]
    assert (ok["error"] == "").all(), ok["error"].tolist()
    hmc = ok[ok["sampler"] == "hmc"]
    # the budget is met to within one draw's cost per chain
    assert (abs(hmc["n_grad_evals"] - 3e4) <= 2 * 16 + 2).all()
    assert (abs(hmc["budget_used"] - 1.0) <= (2 * 16 + 2) / 3e4).all()
    assert (ok["sliced_wasserstein"] > 0).all() and (ok["ess_per_grad"] > 0).all()
    assert frame[frame["model"] == "broken"]["error"].str.contains("cannot be evaluated").all()
    written = write_report(frame, tmp_path)
    assert (tmp_path / "bench.csv").exists() and "Failed runs" in (
        tmp_path / "bench.md"
    ).read_text()
    assert any(path.suffix == ".png" for path in written)
