import os
import shutil
import sys
import tempfile

# tests import their shared helpers as `helpers`
sys.path.insert(0, os.path.dirname(__file__))

CACHE_VAR = "BAYESWB_CACHE_DIR"

# The tests compile far more than they run (most of a small test's time is XLA compiling
# its programs), so they ask XLA's CPU backend for its cheapest code generation: about a
# quarter less wall time per test, the same arithmetic. Set before JAX starts, appended to
# any flags of the caller's, and inherited by the processes tests start.
FAST_COMPILE_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE_FLAGS}".strip()


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
