"""The bayeswb command line."""

import subprocess
import sys

import pytest

import bayeswb as bw
from bayeswb.cli import main


def test_lists(capsys):
    assert main(["models"]) == 0
    assert capsys.readouterr().out.split() == bw.models.names()
    assert main(["samplers"]) == 0
    assert capsys.readouterr().out.split() == bw.samplers.names()


def test_run_prints_summary_and_score_and_saves(capsys, tmp_path):
    out = tmp_path / "run.nc"
    status = main(
        [
            "run",
            "funnel",
            "nuts",
            "--chains",
            "2",
            "--samples",
            "100",
            "--warmup",
            "100",
            "--param",
            "dim=3",
            "--out",
            str(out),
        ]
    )
    text = capsys.readouterr().out
    assert status == 0
    assert "ess_bulk" in text and "sliced_wasserstein" in text and "gradient evaluations" in text
    loaded = bw.load(str(out))
    assert loaded.positions.shape == (2, 100, 3)
    manifest = loaded.manifest  # the command's run, seed and target parameters included
    assert manifest["sampler"] == "nuts" and manifest["seed"] == 0
    assert manifest["target"]["parameters"]["dim"] == 3


def test_errors_are_one_line_without_traceback(capsys):
    assert main(["run", "funnle", "nuts"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean 'funnel'" in err and "Traceback" not in err
    assert main(["run", "funnel", "nuts", "--option", "step_size=-1"]) == 2
    assert "step_size must be a positive number" in capsys.readouterr().err
    assert main(["run", "funnel", "nuts", "--param", "dim"]) == 2
    assert "NAME=VALUE" in capsys.readouterr().err
    assert main(["run", "gaussian", "is", "--option", "num_warmup=10"]) == 2
    assert "give it as --warmup instead" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--seeds", "0"], "at least one seed"),
        (["--budget", "-5"], "budget must be a positive number"),
        (["--budget", "nan"], "budget must be a positive number"),
        (["--budget", "inf"], "budget must be finite"),
        (["--chains", "0"], "num_chains must be an integer >= 1"),
        (["--samplers", "nutz"], "did you mean 'nuts'"),
        (["--models", "gausian"], "did you mean 'gaussian'"),
    ],
)
def test_bench_refuses_a_sweep_before_running_it(capsys, tmp_path, flags, message):
    base = {"--models": "gaussian", "--samplers": "nuts", "--out": str(tmp_path / "out")}
    base.update(zip(flags[::2], flags[1::2], strict=True))
    argv = ["bench", *[item for pair in base.items() for item in pair]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_models_details_table_is_read_not_built(capsys, monkeypatch):
    def built(*args, **kwargs):
        raise AssertionError("a model was built")

    monkeypatch.setattr(bw.models, "get", built)
    assert main(["models", "--details"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["model", "dim", "parameters"]
    funnel = next(line for line in lines if line.startswith("funnel "))
    assert funnel.split()[1] == "10" and "dim=10, scale=3.0" in funnel
    assert {line.split()[0] for line in lines[1 : len(bw.models.names()) + 1]} == set(
        bw.models.names()
    )


def test_figure_list_and_one_line_errors(capsys):
    from bayeswb import figures

    assert main(["figure", "--list"]) == 0
    out = capsys.readouterr().out
    assert "posteriordb_table: " in out and "full run: " in out
    for name in figures.names():
        assert f"{name}: {figures.get(name).TITLE}" in out
    assert main(["figure", "posteriordb_tabel"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean 'posteriordb_table'" in err
    assert main(["figure"]) == 2
    error = "bayeswb: error: figure needs a NAME, or --list to see them\n"
    assert capsys.readouterr().err == error


def test_figure_runs_into_out_dir(capsys, tmp_path, monkeypatch):
    import types

    import pandas as pd

    from bayeswb import figures

    module = types.ModuleType("cli_fake_figure")
    module.TITLE, module.PAPER, module.FULL_RUNTIME = "fake", "Nobody (2026)", "1 s"
    module.compute = lambda quick=False, seed=0: {"results": pd.DataFrame({"seed": [seed]})}

    def plot(tables, out_dir):
        from matplotlib.figure import Figure

        paths = [out_dir / "fake.png", out_dir / "fake.pdf"]
        for path in paths:
            Figure().savefig(path)
        return paths

    module.plot = plot
    monkeypatch.setattr(figures, "_registered", {})
    figures.register(module)
    out = tmp_path / "fig"
    assert main(["figure", "cli_fake_figure", "--quick", "--seed", "7", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out / 'manifest.json'}" in text and f"wrote {out / 'fake.pdf'}" in text
    assert pd.read_csv(out / "results.csv")["seed"].tolist() == [7]


def test_help_loads_no_jax_and_shows_defaults():
    # the help is instant because nothing heavy is imported for it (measured in the note)
    script = (
        "import sys, contextlib, io\n"
        "from bayeswb.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):\n"
        "    main(['run', '--help'])\n"
        "print('jax' in sys.modules, 'arviz' in sys.modules)\n"
        "print(out.getvalue())\n"
    )
    shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("False False")
    assert "(default: 1000)" in shown.stdout and "(default: 0)" in shown.stdout


def test_one_sampler_and_one_model_are_described(capsys):
    assert main(["samplers", "mala"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("mala (langevin): Metropolis-adjusted Langevin")
    assert "Roberts and Tweedie 1996" in text and "  step_size = 0.01  -- " in text
    assert main(["models", "funnel"]) == 0
    text = capsys.readouterr().out
    assert "  scale = 3.0" in text and "log_z: 0" in text
    assert main(["samplers", "nutz"]) == 2
    assert "did you mean 'nuts'" in capsys.readouterr().err
