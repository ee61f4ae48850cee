"""ruff lint and format checks over the repository."""

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
