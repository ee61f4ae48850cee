"""Error of the posterior mean against data passes: sgld, sghmc, csgmcmc and full-batch
mala on a large synthetic logistic regression.

The model is :func:`bayeswb.models.bayesian.logistic_regression_model` (intercept and
``d`` coefficients with ``N(0, 1)`` priors, ``label_i ~ Bernoulli(sigmoid(intercept +
x_i . coefficients))`` in a plate over the data, so ``Target.from_numpyro`` derives the
minibatch interface) on ``N`` rows of standard normal features drawn from a fixed seed,
with true coefficients drawn once from ``N(0, 0.5^2)`` and intercept 0.5.

Reference: the Laplace approximation (the posterior mode by Newton's method in float64
and the inverse negative Hessian there). With N = 100,000 rows and 11 parameters the
posterior is Gaussian to O(N^{-1/2}): the mode differs from the mean by O(1/sqrt(N))
posterior sds (Bernstein-von Mises, and the third-order term of the Laplace expansion
is of that order), far below the accuracies measured here (0.5 and 0.2 sd). The quick
mode (N = 5,000, budgets up to 30 passes) is a smoke test of the script.

Cost: a minibatch gradient on ``batch_size`` rows costs ``batch_size / N`` data passes,
a full-data gradient one pass; counted per draw from the samplers' exact counters (the
``n_steps`` stat of sghmc and csgmcmc, else ``cost["n_grad_evals"]`` spread evenly over
the steps; the totals are checked against ``cost["n_grad_evals"]``) and summed over
both chains. Not counted: the full-data ``lp`` that every sampler reports for each draw
(for the stochastic-gradient samplers an extra pass per draw, needed only for the
diagnostics).

Protocol. Every sampler starts from the target's initial points, runs once (one
compilation) without warmup, for the largest budget, except the "(defaults)" rows: sgld
and sghmc with their default options but the batch size, which tune step and
preconditioner in their default warmup (500 steps of two minibatch gradients each: 10
passes per chain at 1% batches, counted before their first draw); the error at a smaller
budget B is that of the draws each chain made within B/2 passes, the first half
discarded as burn-in (the same rule for all samplers, no knowledge of the truth). Error:
the largest over the 11 coordinates of |estimated mean - reference mean| / reference sd.
Steps are set from the curvature at the mode, as a user can (lambda_max and lambda_min
of the negative Hessian): sgld and csgmcmc ``h = 0.1 * 2 / lambda_max`` (a tenth of the
Euler stability limit; csgmcmc's cycle starts there); sghmc ``h = 0.1 * 2 /
sqrt(lambda_max)`` (a tenth of the leapfrog limit), trajectories of length ``1 /
sqrt(lambda_min)`` (the widest posterior sd) and friction its inverse or ``2 h
lambda_max`` if larger (chosen when the kernel took blackjax's order, which needs
``C > h lambda_max`` to be stable; see ``sghmc_build_kernel``); mala
``h = 1 / lambda_max`` with an identity mass matrix. Minibatches of 1% of the data.

Run: ``python benchmarks/sg_data_passes.py [--quick] [--seed 0] [--num-data N]
[--max-passes B]``. Wall time includes the full-data ``lp`` of every draw (the quick mode
takes about 90 s on 2 busy cores).

Measured (full size, seed 0, 2 busy cores, about 8 min): data passes until the error stays
below 0.5 posterior sd: sgld 23, sghmc 54, csgmcmc 63, mala not within 300 (its error at
300 passes: 0.71, and its own verdict says unreliable); below 0.2 sd: none of the four
within 300 passes (sgld 0.17 at 96 passes, 0.27 at 300: its step-size bias).
"""

from __future__ import annotations

import argparse
import math
import time

import jax
import numpy as np

import bayeswb as bw
from bayeswb.models.bayesian import logistic_regression_model

NUM_FEATURES = 10
ACCURACIES = (0.5, 0.2)


def make_data(num_data: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Standard normal features and Bernoulli labels from fixed true coefficients."""
    rng = np.random.default_rng(seed)
    coefficients = rng.normal(0.0, 0.5, NUM_FEATURES)
    features = rng.normal(size=(num_data, NUM_FEATURES))
    logits = 0.5 + features @ coefficients
    labels = (rng.uniform(size=num_data) < 1.0 / (1.0 + np.exp(-logits))).astype(float)
    return features, labels


def laplace(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mode and negative Hessian of the log posterior over (intercept, coefficients), by
    Newton's method in float64 (the log posterior is strictly concave)."""
    design = np.column_stack([np.ones(len(labels)), features])
    theta = np.zeros(design.shape[1])
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-design @ theta))
        grad = design.T @ (labels - p) - theta
        precision = (design * (p * (1 - p))[:, None]).T @ design + np.eye(len(theta))
        step = np.linalg.solve(precision, grad)
        theta = theta + step
        if np.max(np.abs(step)) < 1e-12:
            break
    p = 1.0 / (1.0 + np.exp(-design @ theta))
    precision = (design * (p * (1 - p))[:, None]).T @ design + np.eye(len(theta))
    return theta, precision


def passes_per_draw(result: bw.Result, num_data: int, batch_size: int | None) -> np.ndarray:
    """(chain, draw) data passes spent by each draw (the initial gradient on the first)."""
    stats = result.idata.sample_stats
    chains, draws = result.idata.posterior.sizes["chain"], result.idata.posterior.sizes["draw"]
    total = result.cost["n_grad_evals"]
    if "n_steps" in stats:
        grads = np.asarray(stats["n_steps"].values, dtype=float)
    else:
        grads = np.ones((chains, draws))  # one gradient per step of these samplers
    # the first draw also pays for the initial state's gradient and the warmup's
    grads[:, 0] += (total - grads.sum()) / chains
    assert abs(grads.sum() - total) < 1e-6 * total, (grads.sum(), total)
    return grads * (1.0 if batch_size is None else batch_size / num_data)


def error_at_budgets(
    result: bw.Result, passes: np.ndarray, budgets: np.ndarray, mean: np.ndarray, sd: np.ndarray
) -> np.ndarray:
    """Max standardised error of the mean from each chain's draws within budget / chains
    passes, the first half of them discarded."""
    post = result.idata.posterior
    x = np.concatenate(
        [post["intercept"].values[..., None], post["coefficients"].values], axis=-1
    )  # (chain, draw, 11)
    spent = np.cumsum(passes, axis=1)
    chains = x.shape[0]
    errors = []
    for budget in budgets:
        kept = []
        for c in range(chains):
            n = int(np.searchsorted(spent[c], budget / chains, side="right"))
            kept.append(x[c, n // 2 : n])
        pooled = np.concatenate(kept)
        if len(pooled) < 2 * chains:
            errors.append(np.nan)
            continue
        errors.append(np.max(np.abs(pooled.mean(0) - mean) / sd))
    return np.asarray(errors)


def passes_to_reach(errors: np.ndarray, budgets: np.ndarray, accuracy: float) -> float:
    """Smallest budget on the grid from which the error stays at most ``accuracy``."""
    ok = np.isfinite(errors) & (errors <= accuracy)
    for i in range(len(budgets)):
        if ok[i:].all():
            return float(budgets[i])
    return math.inf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="N = 5,000, up to 30 passes: a smoke test"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-data", type=int, help="N (default 100,000; quick 5,000)")
    parser.add_argument("--max-passes", type=float, help="largest budget (default 300; quick 30)")
    args = parser.parse_args()
    num_data = args.num_data or (5_000 if args.quick else 100_000)
    max_budget = args.max_passes or (30.0 if args.quick else 300.0)
    table_budgets = np.array([b for b in (1.0, 3.0, 10.0, 30.0, 100.0, 300.0) if b <= max_budget])
    grid = np.geomspace(1.0, max_budget, 41)
    batch_size = num_data // 100
    chains = 2

    features, labels = make_data(num_data, args.seed)
    mode, precision = laplace(features, labels)
    sd = np.sqrt(np.diag(np.linalg.inv(precision)))
    eigenvalues = np.linalg.eigvalsh(precision)
    lam_min, lam_max = float(eigenvalues[0]), float(eigenvalues[-1])
    target = bw.Target.from_numpyro(
        logistic_regression_model,
        jax.numpy.asarray(features, jax.numpy.float32),
        jax.numpy.asarray(labels, jax.numpy.float32),
        name=f"synthetic_logistic_{num_data}",
    )
    assert target.minibatch is not None

    h_euler = 0.1 * 2.0 / lam_max
    h_leapfrog = 0.1 * 2.0 / math.sqrt(lam_max)
    trajectory = 1.0 / math.sqrt(lam_min)
    steps = max(1, round(trajectory / h_leapfrog))
    # name: (options, batch, gradients per draw); "(defaults)" rows tune themselves in
    # their default warmup, whose passes count before their first draw
    runs = {
        "sgld (defaults)": (dict(batch_size=batch_size), batch_size, 1.0),
        "sghmc (defaults)": (dict(batch_size=batch_size), batch_size, 10.0),
        "sgld": (dict(step_size=h_euler, batch_size=batch_size), batch_size, 1.0),
        "sghmc": (
            dict(
                step_size=h_leapfrog,
                batch_size=batch_size,
                num_integration_steps=steps,
                friction=max(1.0 / trajectory, 2.0 * h_leapfrog * lam_max),
            ),
            batch_size,
            float(steps),
        ),
        # one SGD stage of 25 steps per 25 draws: 2 gradients per draw on average
        "csgmcmc": (
            dict(step_size=h_euler, batch_size=batch_size, cycle_length=50),
            batch_size,
            2.0,
        ),
        "mala": (dict(step_size=1.0 / lam_max), None, 1.0),
    }
    print(
        f"synthetic logistic regression: N = {num_data}, d = {NUM_FEATURES} + intercept, "
        f"batch {batch_size}, {chains} chains, seed {args.seed}; Laplace reference, "
        f"curvature {lam_min:.4g} .. {lam_max:.4g}, posterior sd {sd.min():.4g} .. "
        f"{sd.max():.4g}"
    )
    errors, wall = {}, {}
    for name, (options, batch, grads_per_draw) in runs.items():
        pass_per_draw = grads_per_draw * (1.0 if batch is None else batch / num_data)
        num_samples = int(math.ceil(max_budget / chains / pass_per_draw)) + 1
        start = time.perf_counter()
        sampler, defaults = name.split(" ")[0], name.endswith("(defaults)")
        result = bw.sample(
            target,
            sampler,
            seed=args.seed,
            num_chains=chains,
            num_samples=num_samples,
            progress=False,
            **({} if defaults else {"num_warmup": 0}),
            **options,
        )
        wall[name] = time.perf_counter() - start
        passes = passes_per_draw(result, num_data, batch)
        errors[name] = error_at_budgets(result, passes, grid, mode, sd)
        shown = {k: (f"{v:.3g}" if isinstance(v, float) else v) for k, v in options.items()}
        print(f"  {name}: {shown}, {num_samples} draws/chain, {wall[name]:.1f} s")

    print("\nmax |mean error| / posterior sd at a budget of data passes (both chains):")
    columns = [int(np.argmin(np.abs(grid - b))) for b in table_budgets]
    print(f"{'sampler':>16} " + " ".join(f"{grid[i]:>8.3g}" for i in columns))
    for name, err in errors.items():
        print(f"{name:>16} " + " ".join(f"{err[i]:>8.3f}" for i in columns))
    print("\ndata passes until the error stays below (grid of 41 budgets, 1 .. max):")
    print(f"{'sampler':>16} " + " ".join(f"{a:>8}" for a in ACCURACIES))
    for name, err in errors.items():
        print(
            f"{name:>16} " + " ".join(f"{passes_to_reach(err, grid, a):>8.3g}" for a in ACCURACIES)
        )


if __name__ == "__main__":
    main()
