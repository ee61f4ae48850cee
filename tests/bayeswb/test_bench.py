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


def test_a_pair_over_budget_runs_one_pilot_and_scores_it_as_its_first_seed(monkeypatch):
    """A first pilot that spends the budget (as a trained sampler's training does) fixes
    the draws at the pilot's: no second pilot, and the pilot is the first seed's run, the
    same run as a direct call at that seed."""
    import bayeswb.bench as bench_module

    calls = []

    def counted_sample(*args, **kwargs):
        calls.append(kwargs["num_samples"])
        return bw.sample(*args, **kwargs)

    monkeypatch.setattr(bench_module, "sample", counted_sample)
    frame = bench(["gaussian"], ["hmc"], budget=10, seeds=[3, 4], num_chains=2, pilot_samples=20)
    assert calls == [20, 20], "one pilot, then the second seed alone"
    assert (frame["num_samples"] == 20).all() and (frame["error"] == "").all()
    direct = bw.sample("gaussian", "hmc", seed=3, num_chains=2, num_samples=20)
    first = frame[frame["seed"] == 3].iloc[0]
    assert first["n_grad_evals"] == direct.cost["n_grad_evals"]
    assert first["mean_z_max"] == bw.score(direct, bw.models.get("gaussian"))["mean_z_max"]
