import os
import shutil
import subprocess
import sys
import tempfile

import pytest

# tests import their shared helpers as `helpers`
sys.path.insert(0, os.path.dirname(__file__))

CACHE_VAR = "BAYESWB_CACHE_DIR"

# The tests compile far more than they run (most of a small test's time is XLA compiling
# its programs), so they ask XLA's CPU backend for its cheapest code generation: about a
# quarter less wall time per test, the same arithmetic. The CPU backend's newer fusion
# emitters (MLIR-based) compile the many small programs of the tests far more slowly than
# the elemental emitters they replace: with them off, tests/samplers/test_importance.py and
# test_baselines.py (42 tests, one process) spent 26 s in XLA's backend instead of 65 s,
# 101 s in all instead of 149 s (a user's `bayeswb run funnel nuts` gains only a tenth,
# 10.3 s against 11.5 s, so bayeswb itself leaves the flag alone). Set before JAX starts,
# appended to any flags of the caller's, and inherited by the processes tests start.
#
# Two kinds of test run instead in a child pytest process with other code generation:
# - ``default_emitters``: two runs that must agree to float32 round-off as separately
#   compiled programs (a chunked run and its whole run). The elemental emitters round
#   differently in differently shaped programs, and such runs drift apart under them
#   (mclmc by 2e-6, mams by 1e-3, csgmcmc's tuned step by 20%) where the default emitters
#   agree; the child leaves out ``LEGACY_EMITTERS`` only. (With none of the flags,
#   mclmc's chunked run differed from its whole run by 7.6e-6, 3e-5 relative, in 2 of its
#   120 values: the warmup's adaptation amplifies rounding, as in
#   tests/bayeswb/test_devices.py.)
# - ``production_codegen``: the few tests whose time goes into running their programs,
#   not compiling them, get the code a user gets (none of the flags): the unoptimised code
#   runs up to four times slower. Measured on 2 cores, two workers (call time, fast flags
#   / production code generation, the child's start-up of about 5 s left out): fusion on
#   logistic_breast_cancer 142 s / 71 s, the two-layer VAE's test log-likelihood 71 / 25,
#   fab's trained runs 63 / 38, NUTS's short run on horseshoe_diabetes 50 / 27, sghmc on
#   logistic_breast_cancer 24 / 9, sgld through the numpyro minibatch interface 19 / 8.
#   Tests that compile more than they run went the other way (smc's sendera2024 quick
#   figure 26 / 73, fusion's doctest 29 / 44). Measured later, one test at a time on one
#   core (wall time of the pytest process, measured once each), and marked where the
#   production code saved a third or more: dds's narrow-mode training 110 / 64, gfn_tb's
#   trained runs 119 / 78 (call time 63 / 57 when first measured, as above), NUTS's short
#   run on brownian_motion 95 / 47. Left as they are: mc_fusion's exactness tests 112 / 144 and
#   60 / 128, nrpt's default run 45 / 141, cmcd's and scld's trained runs 39 / 58 and
#   38 / 59, NUTS on bnn_classification 47 / 51 and stochastic_volatility 42 / 40, the
#   stochastic-gradient tests on bnn_classification (csgmcmc 70 / 67, sghmc 66 / 58),
#   sgld on logistic_breast_cancer 46 / 39, craft's trained runs 53 / 62, snf's and the
#   IWAE's quick figures 62 / 194 and 61 / 97, flow_is's two-mode defaults 38 / 52 and
#   flow_mcmc on gmm40 43 / 68.
LEGACY_EMITTERS = "--xla_cpu_use_fusion_emitters=false"
FAST_COMPILE_FLAGS = (
    "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true "
    + LEGACY_EMITTERS
)
CHILD_VAR = "BAYESWB_TEST_CODEGEN"
LEFT_OUT = {"default_emitters": LEGACY_EMITTERS, "production_codegen": FAST_COMPILE_FLAGS}
if os.environ.get(CHILD_VAR) in LEFT_OUT:
    flags = os.environ["XLA_FLAGS"].replace(LEFT_OUT[os.environ[CHILD_VAR]], "")
    os.environ["XLA_FLAGS"] = " ".join(flags.split())
else:
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE_FLAGS}".strip()


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """A ``default_emitters`` or ``production_codegen`` test runs in a child pytest process
    with that code generation; its output is shown if it fails."""
    marked = [name for name in LEFT_OUT if pyfuncitem.get_closest_marker(name) is not None]
    if not marked or os.environ.get(CHILD_VAR):
        return None
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"]
    done = subprocess.run(
        [*command, pyfuncitem.nodeid], cwd=root, env={**os.environ, CHILD_VAR: marked[0]},
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.fail(f"in a child process ({marked[0]}):\n{done.stdout[-4000:]}")
    return True


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


def pytest_collection_modifyitems(items):
    """The ``slow`` tests first (in their order), so that the two xdist workers share them
    from the start rather than one of them running a long test at the end alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
