"""One LAPACK call at a time in a CPU program, so that jaxlib's batched LAPACK kernels
cannot deadlock XLA's thread pool.

jaxlib 0.10's CPU kernels for Cholesky, LU, QR, triangular solves and the other
``jax.lax.linalg`` primitives split a large batch into pieces on XLA's intra-op thread
pool and block their own thread until the pieces are done (``ParallelBatchMap``). XLA runs
independent operations of a program at the same time; when as many such calls run at once
as the pool has threads, every thread waits for pieces that no thread is left to run, and
the process hangs (docs/errors.md). Neither ``xla_cpu_multi_thread_eigen=False`` nor
marking the calls as side-effecting changes this, and ``lax.optimization_barrier`` does
not order them (it makes no data dependency that XLA's CPU runtime sees).

:func:`in_order` makes every LAPACK call of a function depend on the one before it: each
call's floating-point inputs get ``0 * nan_to_num(s)`` added, where ``s`` is one element of
the previous call's output. Adding zero leaves every value as it was (up to the sign of a
zero), ``nan_to_num`` keeps a NaN or infinity from the previous call out of the next, and
XLA keeps the dependency (it does not fold ``0 * x`` for floats). Loops (scan, while) and
branches (cond) that hold LAPACK calls are ordered inside, and as wholes among the rest;
calls nested in ``jit``, ``custom_jvp``, ``custom_vjp`` and ``checkpoint`` are inlined.
Any other primitive that holds LAPACK calls (``custom_linear_solve``, which
``jnp.linalg.solve`` makes: its triangular solves depend on each other) is ordered as a
whole.

jaxlib spreads a call over threads only when its batch times its cost estimate reaches
:data:`SPLIT_WORK` FLOP; below that it runs on the calling thread and cannot hang. Ordering
costs a second trace, so a run pays it only when its program could hang:
:func:`bayeswb.execution.driver.compile_program` traces the program once, and if
:func:`could_split` finds such a call, traces it again inside :func:`ordering`, where
:func:`bayeswb.execution.driver.map_chains` wraps each chain's function in :func:`in_order`.
Only the CPU needs this; on a GPU or TPU the programs run unchanged.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax._src.lax import linalg as _linalg
from jax.extend import core as jex

LAPACK_PRIMITIVES = frozenset(
    value.name for value in vars(_linalg).values() if isinstance(value, jex.Primitive)
)
# higher-order primitives whose body runs once, in place: evaluated inline, in order
_INLINED = {
    "pjit": "jaxpr",
    "jit": "jaxpr",
    "closed_call": "call_jaxpr",
    "core_call": "call_jaxpr",
    "custom_jvp_call": "call_jaxpr",
    "custom_vjp_call": "call_jaxpr",
    "checkpoint": "jaxpr",
    "remat": "jaxpr",
}
# loops and branches: their bodies are ordered, and they are ordered as a whole
_BODIES = {"scan": ("jaxpr",), "while": ("cond_jaxpr", "body_jaxpr"), "cond": ("branches",)}
_ORDERING = contextvars.ContextVar("bayeswb_lapack_ordering", default=False)
# jaxlib (lapack_kernels.cc, kMinWorkPerTask) runs a batched call on one thread unless
# batch x cost estimate reaches this. Its estimates per matrix: m n min(m, n) (LU), n^2 m
# (triangular solve), 2 m n min(m, n) (QR), below 4 m n k (Q from QR), 4 n^3 (eigh),
# 10 n^3 (eig), 10 m n min(m, n) (SVD), 3 times that for complex types; _work_bound
# over-estimates every one. An SVD of matrices from 8 x 8 up is split in any batch of 2 or
# more by a rule of its own in some jaxlib versions, so it counts as large from there.
SPLIT_WORK = 200_000
_SPECTRAL = frozenset({"eig", "eigh", "svd", "schur", "hessenberg", "tridiagonal"})


@contextlib.contextmanager
def ordering() -> Iterator[None]:
    """Inside this block, :func:`when_ordering` orders the LAPACK calls of a function."""
    token = _ORDERING.set(True)
    try:
        yield
    finally:
        _ORDERING.reset(token)


def when_ordering(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``in_order(fn)`` inside :func:`ordering`, else ``fn`` itself.

    Example:
        >>> f = jnp.sin
        >>> when_ordering(f) is f
        True
        >>> with ordering():
        ...     when_ordering(f) is f
        False
    """
    return in_order(fn) if _ORDERING.get() else fn


def in_order(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with its LAPACK calls made to run one after another (module docstring); the
    same values as ``fn``. A function without LAPACK calls is evaluated as it was traced.

    Example:
        >>> import numpy as np
        >>> def f(a):
        ...     return jnp.linalg.qr(a)[0].sum() + jnp.linalg.cholesky(a).sum()
        >>> a = jnp.eye(3) * 2.0
        >>> bool(np.array_equal(in_order(f)(a), f(a)))
        True
    """

    def ordered(*args: Any) -> Any:
        closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
        flat = jax.tree.leaves(args)
        if calls_lapack(closed.jaxpr):
            out, _ = _evaluate(closed.jaxpr, closed.consts, flat, None)
        else:
            out = jex.jaxpr_as_fun(closed)(*flat)
        return jax.tree.unflatten(jax.tree.structure(out_shape), out)

    return ordered


def calls_lapack(jaxpr: Any) -> bool:
    """Whether ``jaxpr`` (a Jaxpr, nested jaxprs included) holds a ``jax.lax.linalg`` call.

    Example:
        >>> calls_lapack(jax.make_jaxpr(jnp.linalg.cholesky)(jnp.eye(2)).jaxpr)
        True
        >>> calls_lapack(jax.make_jaxpr(jnp.sin)(1.0).jaxpr)
        False
    """
    return _any_eqn(jaxpr, lambda eqn: eqn.primitive.name in LAPACK_PRIMITIVES)


def could_split(jaxpr: Any) -> bool:
    """Whether a LAPACK call of ``jaxpr`` (nested jaxprs included) has a batch large enough
    that jaxlib may spread it over threads (:data:`SPLIT_WORK`), which is when several such
    calls at once can hang.

    Example:
        >>> def factor(a):
        ...     return jnp.linalg.cholesky(a)
        >>> could_split(jax.make_jaxpr(factor)(jnp.ones((4, 20, 20))).jaxpr)
        False
        >>> could_split(jax.make_jaxpr(factor)(jnp.ones((100, 20, 20))).jaxpr)
        True
    """
    return _any_eqn(
        jaxpr,
        lambda eqn: eqn.primitive.name in LAPACK_PRIMITIVES and _work_bound(eqn) >= SPLIT_WORK,
    )


def _any_eqn(jaxpr: Any, found: Callable[[Any], bool]) -> bool:
    """Whether ``found`` holds for an equation of ``jaxpr`` or of a jaxpr nested in it."""
    return any(
        found(eqn) or any(_any_eqn(inner, found) for inner in jex.jaxprs_in_params(eqn.params))
        for eqn in jaxpr.eqns
    )


def _work_bound(eqn: Any) -> int:
    """An upper bound on jaxlib's FLOP estimate for the whole batch of a LAPACK call."""
    worst = 0
    for var in eqn.invars:
        shape: tuple[int, ...] = tuple(getattr(var.aval, "shape", ()))
        if len(shape) < 2:
            continue
        rows, cols = int(shape[-2]), int(shape[-1])
        factor = 32 if eqn.primitive.name in _SPECTRAL else 4
        if jax.dtypes.issubdtype(var.aval.dtype, jnp.complexfloating):
            factor *= 3
        batch = math.prod(int(d) for d in shape[:-2])
        if eqn.primitive.name == "svd" and batch > 1 and rows * cols >= 64:
            return SPLIT_WORK
        worst = max(worst, batch * factor * rows * cols * max(rows, cols))
    return worst


def _evaluate(jaxpr: Any, consts: Sequence[Any], args: Sequence[Any], token: Any) -> Any:
    """Evaluate ``jaxpr`` with each LAPACK call tied to ``token``, the previous call's
    output (None before the first); returns the outputs and the last token."""
    env: dict[Any, Any] = dict(zip(jaxpr.constvars, consts, strict=True))
    env.update(zip(jaxpr.invars, args, strict=True))
    for eqn in jaxpr.eqns:
        values = [v.val if isinstance(v, jex.Literal) else env[v] for v in eqn.invars]
        name = eqn.primitive.name
        holds_lapack = any(map(calls_lapack, jex.jaxprs_in_params(eqn.params)))
        if name in LAPACK_PRIMITIVES or (name in _BODIES and holds_lapack):
            params = dict(eqn.params)
            for key in _BODIES.get(name, ()):
                params[key] = _ordered_bodies(params[key])
            out = eqn.primitive.bind(*[_tied(x, token) for x in values], **params)
            outs = out if eqn.primitive.multiple_results else [out]
            token = _token(outs, token)
        elif name in _INLINED and holds_lapack:
            body = eqn.params[_INLINED[name]]
            closed = body if isinstance(body, jex.ClosedJaxpr) else jex.ClosedJaxpr(body, ())
            outs, token = _evaluate(closed.jaxpr, closed.consts, values, token)
        elif holds_lapack:  # another higher-order primitive (custom_linear_solve): a whole
            with eqn.ctx.manager:
                params = eqn.primitive.get_bind_params(eqn.params)
                out = eqn.primitive.bind(*[_tied(x, token) for x in values], **params)
            outs = out if eqn.primitive.multiple_results else [out]
            token = _token(outs, token)
        else:
            with eqn.ctx.manager:
                out = eqn.primitive.bind(*values, **eqn.primitive.get_bind_params(eqn.params))
            outs = out if eqn.primitive.multiple_results else [out]
        env.update(zip(eqn.outvars, outs, strict=True))
    return [v.val if isinstance(v, jex.Literal) else env[v] for v in jaxpr.outvars], token


def _ordered_bodies(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return type(value)(_ordered_bodies(item) for item in value)
    if not calls_lapack(value.jaxpr):
        return value

    def body(*xs: Any) -> Any:
        return _evaluate(value.jaxpr, value.consts, xs, None)[0]

    avals = value.in_avals
    return jax.make_jaxpr(body)(
        *[jax.ShapeDtypeStruct(a.shape, a.dtype, weak_type=a.weak_type) for a in avals]
    )


def _ordinary_float(x: Any) -> bool:
    aval = jax.typeof(x)
    return (
        jax.dtypes.issubdtype(aval.dtype, jnp.inexact)
        and not getattr(aval, "weak_type", False)
        and aval.size > 0
    )


def _tied(x: Any, token: Any) -> Any:
    """``x`` plus a zero computed from ``token``: the same values, computed after it."""
    if token is None or not _ordinary_float(x):
        return x
    zero = jnp.nan_to_num(token, nan=0.0, posinf=0.0, neginf=0.0) * 0
    return lax.add(x, lax.convert_element_type(zero, x.dtype))


def _token(outs: Sequence[Any], previous: Any) -> Any:
    for out in outs:
        if _ordinary_float(out):
            return jnp.real(jnp.ravel(out)[0])
    return previous
