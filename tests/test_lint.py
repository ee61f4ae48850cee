"""ruff lint and format checks and the type check over the repository."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]])
def test_ruff(command):
    # python -m ruff: the ruff installed beside this interpreter, whether or not its
    # environment's bin folder is on PATH
    done = subprocess.run(
        [sys.executable, "-m", "ruff", *command], cwd=ROOT, capture_output=True, text=True
    )
    assert "No module named ruff" not in done.stderr, "ruff is a test dependency: .[test]"
    assert done.returncode == 0, done.stdout + done.stderr


def test_types():
    """mypy over bayeswb, bayeswb.samplers and bayeswb.models as installed (.ci/typecheck)."""
    done = subprocess.run(
        ["bash", str(ROOT / ".ci" / "typecheck")],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
