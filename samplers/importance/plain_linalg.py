"""Small dense linear algebra in plain XLA ops, for amis's mixture proposals.

jaxlib 0.10.2's CPU LAPACK kernels (the custom calls behind jnp.linalg.cholesky and
solve_triangular) split a batch over the XLA intra-op thread pool and block a pool thread
until the pieces are done; when as many such calls as the pool has threads run at once
(XLA:CPU runs independent ops of a scan body concurrently), every pool thread waits for
work that no thread is left to run, and the program hangs (issue 6: amis with 100 runs on
2 cores; see docs/errors.md). The matrices here are d x d with small d, so loops over d of
vector operations cost little, and amis's compiled program holds no LAPACK call at all.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def cholesky_lower(matrix: Array) -> Array:
    """Lower Cholesky factor ``L`` (``L L^T = matrix``) of a symmetric positive-definite
    (d, d) matrix, column by column (Golub and Van Loan 2013, "Matrix computations",
    section 4.2, the gaxpy Cholesky); a matrix that is not positive definite gives
    NaN (in the lower triangle), as LAPACK's. Batch it with ``jax.vmap``.

    Example:
        >>> a = jnp.array([[4.0, 2.0], [2.0, 5.0]])
        >>> cholesky_lower(a).tolist()
        [[2.0, 0.0], [1.0, 2.0]]
    """
    dim = matrix.shape[-1]
    index = jnp.arange(dim)

    def column(j: Array, factor: Array) -> Array:
        row = factor[j]  # L[j, :j], zero from j on
        diagonal = jnp.sqrt(matrix[j, j] - row @ row)
        below = (matrix[:, j] - factor @ row) / diagonal
        return factor.at[:, j].set(
            jnp.where(index > j, below, jnp.where(index == j, diagonal, 0.0))
        )

    return jax.lax.fori_loop(0, dim, column, jnp.zeros_like(matrix))


def solve_lower(factor: Array, rhs: Array) -> Array:
    """``L^{-1} B`` by forward substitution: factor (d, d) lower-triangular, rhs (d, m).

    Example:
        >>> solve_lower(jnp.array([[2.0, 0.0], [1.0, 2.0]]), jnp.array([[2.0], [5.0]])).tolist()
        [[1.0], [2.0]]
    """

    def row(i: Array, solution: Array) -> Array:
        value = (rhs[i] - factor[i] @ solution) / factor[i, i]  # rows >= i are still zero
        return solution.at[i].set(value)

    return jax.lax.fori_loop(0, factor.shape[-1], row, jnp.zeros_like(rhs))
