"""One LAPACK call at a time on the CPU (bayeswb/execution/lapack_order.py): the same
values as the function as written, and no hang where jaxlib 0.10.2's batched kernels,
run side by side, deadlock XLA's thread pool (docs/errors.md)."""

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jex

from bayeswb.execution.lapack_order import LAPACK_PRIMITIVES, calls_lapack, in_order


def three_independent_calls(a):
    q = jnp.linalg.qr(a)[0]
    s = jnp.linalg.solve(a + 1.0, a)
    c = jnp.linalg.cholesky(a @ a.swapaxes(-1, -2) + 3 * jnp.eye(a.shape[-1]))
    return q.sum() + s.sum() + c.sum()


def scan_of_batched_calls(x, length=30):
    def step(carry, _):
        return carry * 1.0001 + 1e-9 * jax.vmap(three_independent_calls)(carry).sum(), None

    return jax.lax.scan(step, x, None, length=length)[0]


def matrices(n):
    noise = jax.random.normal(jax.random.key(0), (n, 3, 3)) * 0.1
    return jnp.tile(jnp.eye(3) * 2.0, (n, 1, 1)) + noise


def test_the_same_values_as_the_function_as_written():
    x = matrices(50)
    np.testing.assert_array_equal(
        jax.jit(in_order(scan_of_batched_calls))(x), jax.jit(scan_of_batched_calls)(x)
    )

    # nested in jit, cond, while and custom_jvp, with gradients taken before ordering
    def nested(a):
        inner = jax.jit(lambda b: jax.nn.softplus(three_independent_calls(b)))
        picked = jax.lax.cond(a[0, 0] > 0, inner, lambda b: b.sum(), a)
        looped = jax.lax.fori_loop(0, 3, lambda i, b: b + 0.01 * jnp.linalg.inv(b), a)
        return picked + looped.sum() + jax.grad(three_independent_calls)(a).sum()

    a = matrices(1)[0]
    np.testing.assert_array_equal(jax.jit(in_order(nested))(a), jax.jit(nested)(a))


def test_without_lapack_the_function_is_unchanged():
    assert float(in_order(lambda x: jnp.sin(x) * 2)(1.0)) == float(jnp.sin(1.0) * 2)


def lapack_steps(jaxpr):
    """The top-level equations of ``jaxpr`` that are or hold LAPACK calls, in order."""
    return [
        eqn
        for eqn in jaxpr.eqns
        if eqn.primitive.name in LAPACK_PRIMITIVES
        or any(map(calls_lapack, jex.jaxprs_in_params(eqn.params)))
    ]


def depends_on(jaxpr, later, earlier):
    """Whether an input of equation ``later`` is computed from an output of ``earlier``."""
    reached = set(earlier.outvars)
    for eqn in jaxpr.eqns:
        if eqn is later:
            return any(var in reached for var in later.invars if not isinstance(var, jex.Literal))
        if any(var in reached for var in eqn.invars if not isinstance(var, jex.Literal)):
            reached.update(eqn.outvars)
    raise AssertionError("later is not in jaxpr")


def test_every_call_waits_for_the_one_before():
    """Each LAPACK call, and each ``custom_linear_solve`` (``jnp.linalg.solve``) as a whole,
    takes an input computed from the output of the one before it."""
    jaxpr = jax.make_jaxpr(in_order(three_independent_calls))(matrices(4)).jaxpr
    while len(jaxpr.eqns) == 1 and jaxpr.eqns[0].primitive.name in ("jit", "pjit"):
        jaxpr = jaxpr.eqns[0].params["jaxpr"].jaxpr
    steps = lapack_steps(jaxpr)  # the calls of jnp.linalg's jitted functions, inlined
    names = [e.primitive.name for e in steps]
    assert names == ["qr", "lu", "custom_linear_solve", "cholesky"], names
    for earlier, later in zip(steps, steps[1:], strict=False):
        assert depends_on(jaxpr, later, earlier), (earlier.primitive, later.primitive)


HANGS_WITHOUT_ORDER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[1])
    import jax
    from test_lapack_order import in_order, matrices, scan_of_batched_calls
    x = matrices(20000)
    jax.jit(in_order(scan_of_batched_calls)).lower(x).compile()(x).block_until_ready()
    print("done")
    """
)


def test_batched_calls_side_by_side_finish():
    """Unordered, this program hung in 3 of 3 tries on 2 cores (it would time out)."""
    import os

    done = subprocess.run(
        [sys.executable, "-c", HANGS_WITHOUT_ORDER, os.path.dirname(__file__)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["done"]
