import os
import shutil
import sys
import tempfile

# tests import their shared helpers as `helpers`
sys.path.insert(0, os.path.dirname(__file__))

CACHE_VAR = "BAYESWB_CACHE_DIR"


def pytest_configure(config):
    """One persistent compilation cache for the whole test run, shared by the xdist workers
    and the processes tests start (they inherit the environment), away from the user's own
    cache: a new Target of a model an earlier test compiled reads its programs back."""
    if hasattr(config, "workerinput") or CACHE_VAR in os.environ:
        return
    folder = tempfile.mkdtemp(prefix="bayeswb-test-jax-cache-")
    os.environ[CACHE_VAR] = folder
    config._bayeswb_cache_folder = folder


def pytest_unconfigure(config):
    folder = getattr(config, "_bayeswb_cache_folder", None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
        os.environ.pop(CACHE_VAR, None)
