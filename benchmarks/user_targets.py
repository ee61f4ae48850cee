"""The default-settings sweep on targets a user might bring, outside the registry: every
listed sampler with default options, scored against exact answers, beside its verdict.

The registry's targets are the ones the defaults were developed on. These four were not:

- ``user_two_modes_10d``: an equal mixture of N(0, I) and N(10 e_1, I) in 10-d;
- ``user_far_mode_2d``: an equal mixture of N(0, I) and N((35, 0), I) in 2-d, the far mode
  between two radii of the ray probe behind the SMC family's automatic reference;
- ``user_ill_conditioned``: the registry's ``gaussian`` model rotated in 10-d, covariance
  eigenvalues 1e-4 to 1 (its default condition number is 10);
- ``user_student_t``: a Student-t with 3 degrees of freedom in 5-d (heavy tails).

Each carries its exact log Z, exact draws and exact moments (built by the registry's own
:func:`~bayeswb.models.synthetic.mixture_target` and ``gaussian``). The outcomes are those of
``benchmarks/defaults.py`` (:func:`bayeswb.figures.defaults_matrix.outcome`). Measured
(seeds 0 and 1, nuts, mala, smc, ais, smc_langevin, nrpt, pathfinder, fullrank_vi and amis
on the first, third and fourth, defined in a scratch script before this file, the
Gaussian with eigenvalues 1 to 1e4): no silent failure in 54 runs; on the two-mode target
nuts, mala, pathfinder, fullrank_vi and amis put every draw in one mode, and in 10 of
those runs ``unvisited_mode`` was the only check that failed (before it counted a peak
3 sds beyond every draw along its line, all 10 said "fine"). Not counted as a failure by
the sweep's definition, which scores means and log Z: smc's and smc_langevin's sds on the
ill-conditioned Gaussian, 4-14 of their MCSEs off (smc's sd of x_0: 61 against 77);
smc rerun on the registry's Gaussian as defined here: 8.4 and 5.1 MCSEs (seeds 0, 1),
and 2.6 and 3.4 once its moves whitened by the particles' covariance (accurate and fine;
nrpt accurate and flagged by R-hat and ESS, ais by the weights' ESS).
On the far mode, smc (seeds 0 and 1) is bad and flagged (``unvisited_mode``,
``log_z_spread``): every particle in the near mode, log Z 57-58 of its SEs off.

    python benchmarks/user_targets.py --samplers nuts,smc --out user_targets
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.scipy.special import gammaln

import bayeswb as bw
from bayeswb.core.target import Reference
from bayeswb.figures import defaults_matrix as figure
from bayeswb.models.synthetic import gaussian, mixture_target

SAMPLERS = "nuts,mala,smc,ais,smc_langevin,nrpt,pathfinder,fullrank_vi,amis"


def two_modes(separation: float, dim: int, name: str) -> bw.Target:
    """An equal mixture of N(0, I) and N(separation e_1, I) in ``dim`` dimensions."""
    means = np.zeros((2, dim))
    means[1, 0] = separation
    return mixture_target(name, means, 1.0, {"separation": separation}, "two modes")


def ill_conditioned(dim: int = 10, condition: float = 1e4) -> bw.Target:
    """The registry's rotated Gaussian, variances 1e-4 to 1 (``models/synthetic.py``)."""
    target = gaussian(dim=dim, condition_number=condition, rotation=0)
    return dataclasses.replace(target, name="user_ill_conditioned")


def student_t(dof: float = 3.0, dim: int = 5) -> bw.Target:
    """The standard multivariate Student-t with ``dof`` degrees of freedom."""
    log_norm = gammaln((dof + dim) / 2) - gammaln(dof / 2) - dim / 2 * jnp.log(dof * jnp.pi)

    def sample_exact(key: jax.Array, n: int) -> jax.Array:
        normal_key, gamma_key = jax.random.split(key)
        precision = jax.random.gamma(gamma_key, dof / 2, (n, 1)) / (dof / 2)
        return jax.random.normal(normal_key, (n, dim)) / jnp.sqrt(precision)

    reference = Reference(
        {"x": np.zeros(dim)}, {"x": np.full(dim, math.sqrt(dof / (dof - 2)))}, "exact"
    )
    return bw.Target.from_logdensity(
        lambda x: log_norm - (dof + dim) / 2 * jnp.log1p(jnp.sum(x**2) / dof),
        dim,
        name="user_student_t",
        log_z=0.0,
        sample_exact=sample_exact,
        reference=reference,
    )


TARGETS = {
    "user_two_modes_10d": lambda: two_modes(10.0, 10, "user_two_modes_10d"),
    "user_far_mode_2d": lambda: two_modes(35.0, 2, "user_far_mode_2d"),
    "user_ill_conditioned": ill_conditioned,
    "user_student_t": student_t,
}


def check_truth(target: bw.Target, n: int = 200_000) -> None:
    """The exact draws' mean and sd agree with the stated ones (to 5 of their standard
    errors), so that a score against them is a score against the truth."""
    draws = np.asarray(target.sample_exact(jax.random.key(1), n), np.float64)
    mean, sd = target.reference.mean["x"], target.reference.sd["x"]
    assert np.all(np.abs(draws.mean(axis=0) - mean) < 5 * sd / math.sqrt(n)), target.name
    # the sd's standard error needs the fourth moment (infinite for the Student-t's 3 dof)
    if target.name != "user_student_t":
        assert np.all(np.abs(draws.std(axis=0) / sd - 1) < 0.02), target.name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated")
    parser.add_argument("--samplers", default=SAMPLERS, help="comma-separated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="user_targets", help="folder for the table")
    args = parser.parse_args()
    names = args.targets.split(",")
    for name in names:
        check_truth(TARGETS[name]())
        bw.models.register(name)(TARGETS[name])
    tables = figure.compute(models=names, samplers=args.samplers.split(","), seed=args.seed)
    results = tables["results"]
    shown = ["model", "sampler", "seed", "mean_z_max", "sd_z_max", "log_z_error_in_se"]
    with pd.option_context("display.width", 200, "display.max_rows", 1000):
        print(results.reindex(columns=[*shown, "verdict", "outcome"]).to_string(index=False))
        print(tables["counts"].to_string(index=False))
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results.to_csv(out / "results.csv", index=False)


if __name__ == "__main__":
    main()
