"""The figure runner (bayeswb.figures) and the posteriordb-style table figure."""

import json
import re
import sys
import textwrap
import types

import jax
import numpy as np
import pandas as pd
import pytest
from helpers import assert_z_scores

from bayeswb import figures
from bayeswb.core.provenance import PACKAGES


def _fake_module(name="fake_figure", plot_suffixes=(".png", ".pdf")):
    """A figure module by the protocol: results depend on the seed only."""
    module = types.ModuleType(name)
    module.TITLE = "a fake figure"
    module.PAPER = "Nobody (2026), a test, Fig. 0"
    module.FULL_RUNTIME = "about 1 s"
    module.calls = []

    def compute(quick=False, seed=0):
        module.calls.append((quick, seed))
        rng = np.random.default_rng(seed)
        results = pd.DataFrame({"x": np.arange(3), "y": rng.normal(size=3)})
        published = pd.DataFrame(
            {"setting": ["a"], "metric": ["m"], "ours": [1.0], "published": [1.5]}
        ).assign(difference=lambda f: f.ours - f.published)
        return {"results": results, "published": published}

    def plot(tables, out_dir):
        from matplotlib.figure import Figure

        fig = Figure()
        fig.subplots().plot(tables["results"]["x"], tables["results"]["y"])
        paths = [out_dir / f"{name}{suffix}" for suffix in plot_suffixes]
        for path in paths:
            fig.savefig(path)
        return paths

    module.compute, module.plot = compute, plot
    return module


@pytest.fixture
def registered(monkeypatch):
    """Registry of extra figures, emptied again after the test."""
    monkeypatch.setattr(figures, "_registered", {})
    return figures


def test_run_writes_tables_plots_and_manifest(registered, tmp_path, capsys):
    module = _fake_module()
    assert registered.register(module) == "fake_figure"
    assert "fake_figure" in registered.names() and registered.get("fake_figure") is module
    tables = registered.run("fake_figure", tmp_path / "a", quick=True, seed=3)
    assert module.calls == [(True, 3)]
    assert capsys.readouterr().err == ""  # no run-time note in quick mode
    out = tmp_path / "a"
    pd.testing.assert_frame_equal(pd.read_csv(out / "results.csv"), tables["results"])
    assert list(pd.read_csv(out / "published.csv").columns) == [
        "setting",
        "metric",
        "ours",
        "published",
        "difference",
    ]
    assert (out / "fake_figure.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "fake_figure.pdf").read_bytes()[:4] == b"%PDF"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["figure"] == "fake_figure" and manifest["paper"] == module.PAPER
    assert manifest["seed"] == 3 and manifest["quick"] is True
    assert manifest["command"] == "bayeswb figure fake_figure --seed 3 --quick"
    assert manifest["files"] == [
        "results.csv",
        "published.csv",
        "fake_figure.png",
        "fake_figure.pdf",
    ]
    assert set(PACKAGES) <= set(manifest["versions"])
    assert manifest["versions"]["jax"] == jax.__version__
    assert manifest["versions"]["bayeswb"] is not None
    revision = manifest["git_revision"]
    assert revision is None or re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", revision)
    assert manifest["elapsed_s"] >= 0 and manifest["started_utc"].endswith("+00:00")
    assert manifest["platform"]["python"] == ".".join(map(str, sys.version_info[:3]))

    # same seed, same numbers; another seed, other numbers; full mode notes its run time
    again = registered.run("fake_figure", tmp_path / "b", quick=False, seed=3)
    assert "full mode, expected about 1 s" in capsys.readouterr().err
    pd.testing.assert_frame_equal(again["results"], tables["results"])
    other = registered.run("fake_figure", tmp_path / "c", quick=True, seed=4)
    assert not np.allclose(other["results"]["y"], tables["results"]["y"])


def test_run_rejects_missing_plot_files_and_results(registered, tmp_path):
    registered.register(_fake_module("png_only", plot_suffixes=(".png",)))
    with pytest.raises(ValueError, match="must write a PNG and a PDF"):
        registered.run("png_only", tmp_path, quick=True)
    no_results = _fake_module("no_results")
    no_results.compute = lambda quick=False, seed=0: {"table": pd.DataFrame()}
    registered.register(no_results)
    with pytest.raises(ValueError, match="'results' table"):
        registered.run("no_results", tmp_path, quick=True)
    incomplete = types.ModuleType("incomplete")
    incomplete.TITLE = "x"
    with pytest.raises(ValueError, match="no PAPER, FULL_RUNTIME, compute, plot"):
        registered.register(incomplete)


def test_unknown_name_lists_close_names(registered):
    registered.register(_fake_module())
    with pytest.raises(KeyError, match="did you mean 'fake_figure'"):
        registered.get("fake_figur")


def test_broken_modules_are_reported_and_do_not_hide_others(monkeypatch, tmp_path, capsys):
    from bayeswb.cli import main

    (tmp_path / "zz_broken_import.py").write_text("1 / 0\n")
    (tmp_path / "zz_not_protocol.py").write_text('TITLE = "half done"\n')
    (tmp_path / "zz_fine.py").write_text(
        textwrap.dedent(
            """
            TITLE = "fine"
            PAPER = "Someone (2026)"
            FULL_RUNTIME = "1 s"
            def compute(quick=False, seed=0): ...
            def plot(tables, out_dir): ...
            """
        )
    )
    monkeypatch.setattr(figures, "__path__", [*figures.__path__, str(tmp_path)])
    for name in ("zz_broken_import", "zz_not_protocol", "zz_fine"):
        monkeypatch.delitem(sys.modules, f"bayeswb.figures.{name}", raising=False)
    assert "zz_fine" in figures.names()
    broken = figures.broken()
    assert broken["zz_broken_import"] == "import failed: ZeroDivisionError: division by zero"
    assert broken["zz_not_protocol"] == (
        "not a figure module: no PAPER, FULL_RUNTIME, compute, plot"
    )
    with pytest.raises(KeyError, match="cannot run: import failed: ZeroDivisionError"):
        figures.get("zz_broken_import")

    assert main(["figure", "--list"]) == 0
    out = capsys.readouterr().out
    assert "zz_fine: fine (full run: 1 s)" in out
    assert "zz_broken_import: import failed: ZeroDivisionError: division by zero" in out
    for name in figures.names():
        assert f"\n{name}: " in f"\n{out}"


@pytest.mark.slow
def test_posteriordb_table_quick(tmp_path):
    """Quick mode: 2 models x 2 samplers (MCMC and VI), all run; NUTS on the non-centred
    eight schools agrees with the reference in MCSE units (Bonferroni over the reference's
    parameters)."""
    from bayeswb.figures import posteriordb_table

    tables = posteriordb_table.compute(quick=True, seed=0)
    results = tables["results"]
    assert list(results.columns) == posteriordb_table.COLUMNS
    assert len(results) == 4 and set(results["sampler"]) == {"nuts", "meanfield_vi"}
    assert set(results["model"]) == {"eight_schools_centered", "eight_schools_noncentered"}
    assert (results["error"] == "").all(), results["error"].tolist()
    assert np.isfinite(results[posteriordb_table.SCORES].to_numpy(dtype=float)).all()
    assert (results["n_grad_evals"] > 0).all()

    # mean_z_max is the largest |z| over every reference parameter: one Bonferroni family
    import bayeswb as bw

    reference = bw.models.get("eight_schools_noncentered").reference
    count = sum(np.size(value) for value in reference.mean.values())
    nuts = results.query("model == 'eight_schools_noncentered' and sampler == 'nuts'")
    z_max = float(nuts["mean_z_max"].iloc[0])
    assert_z_scores(np.array([z_max]), "NUTS mean z vs reference", alpha=1e-3 / count)

    paths = posteriordb_table.plot(tables, tmp_path)
    assert [p.name for p in paths] == ["posteriordb_table.png", "posteriordb_table.pdf"]
    assert all(p.stat().st_size > 1000 for p in paths)


def test_posteriordb_table_full_settings_resolve_every_samplers_warmup():
    """Full mode runs every registered sampler: each gets a warmup (an int, or None where
    the sampler's own default is None: fusion and consensus take their shard sampler's)
    that its config accepts. A full run once failed after 46 minutes on fusion's None."""
    import bayeswb as bw
    from bayeswb.figures import posteriordb_table

    settings = posteriordb_table._settings(quick=False)
    assert set(settings["samplers"]) == set(bw.samplers.names())
    for sampler in settings["samplers"]:
        warmup = posteriordb_table.warmup_for(sampler, settings)
        default = bw.samplers.get(sampler).make_config().num_warmup
        assert warmup == default, sampler
        bw.samplers.get(sampler).make_config(num_warmup=warmup)  # accepted


def test_defaults_matrix_outcomes():
    from bayeswb.figures.defaults_matrix import outcome

    def row(**fields):
        return pd.Series({"error": "", "verdict": "fine", **fields})

    assert outcome(row(mean_z_max=2.0, log_z_error_in_se=1.0)) == "accurate, fine"
    assert outcome(row(mean_z_max=2.0, verdict="unreliable: r_hat")) == "accurate, flagged"
    assert outcome(row(mean_z_max=6.0)) == "SILENT FAILURE"
    assert outcome(row(mean_z_max=1.0, log_z_error_in_se=-7.0)) == "SILENT FAILURE"
    assert outcome(row(mean_z_max=np.inf, verdict="unreliable: r_hat")) == "bad, flagged"
    assert outcome(row(error="ValueError: no minibatch interface")) == "error"
    # nothing to score against: no evidence either way, never "accurate"
    assert outcome(row(mean_z_max=np.nan, log_z_error_in_se=np.nan)) == "unscored"
    assert outcome(row()) == "unscored"
    assert outcome(row(log_z_error_in_se=2.0)) == "accurate, fine"


def test_defaults_matrix_quick_has_no_silent_failure(tmp_path):
    from bayeswb.figures import defaults_matrix

    tables = defaults_matrix.compute(quick=True, seed=0)
    results = tables["results"]
    assert set(results["outcome"]) <= set(defaults_matrix.OUTCOMES)
    assert (results["error"] == "").all(), results["error"].tolist()
    silent = results[results["outcome"] == "SILENT FAILURE"]
    assert silent.empty, silent[["model", "sampler", "mean_z_max", "verdict"]].to_string()
    assert int(tables["counts"]["count"].sum()) == len(results)
    paths = defaults_matrix.plot(tables, tmp_path)
    assert [p.name for p in paths] == ["defaults_matrix.png", "defaults_matrix.pdf"]
