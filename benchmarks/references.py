"""Compute the reference posterior moments of the registry's numpyro models, and check the
quadrature ground truth of the low-dimensional energies.

Reference posteriors, stored in ``models/data/references.json`` with how they were made
(method, sampler, chains, draws, warmup, seed, target acceptance, max R-hat, min bulk ESS,
divergences, or the quadrature grid and its error):

- NUTS (numpyro's, on each target's own unconstrained log density ``-Target.log_density``
  as the potential), several chains, a long run, on the best-conditioned parameterisation
  of the posterior (``POSTERIORS``); stored only if every R-hat is below 1.01 and no
  transition diverged, otherwise the script says so and stores nothing for it;
- horseshoe_diabetes: NUTS on the model with the coefficients integrated out, coefficient
  moments by Rao-Blackwellisation (same acceptance rule);
- brownian_motion: quadrature over its two scales (exact up to the grid);
- bnn_classification: NUTS moments of the predictive probabilities only, with R-hat across
  16 chains on them (the raw weights are not identifiable).

Usage::

    python benchmarks/references.py posteriors [--models a,b] [--chains 4] [--draws 5000]
        [--warmup 2000] [--seed 0] [--target-accept P]
    python benchmarks/references.py posteriors --models bnn_classification --chains 16 \\
        --draws 1000 --warmup 800
    python benchmarks/references.py quadrature
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import arviz as az
import jax
import numpy as np
import numpyro
from numpyro.infer import MCMC, NUTS
from scipy.special import logsumexp

import bayeswb as bw
from bayeswb.models import _grid, bayesian, energies

REFERENCES_FILE = (
    pathlib.Path(__file__).resolve().parent.parent / "models" / "data" / "references.json"
)

# model name -> (factory parameters of the run, NUTS target acceptance, variables stored
# (None: all), parameters the stored entry applies to); R-hat and ESS are computed on the
# stored variables and those of ALSO_DIAGNOSED. A model whose posterior over the
# stored variables is shared by its parameterisations is run on the better-conditioned one.
POSTERIORS = {
    "eight_schools_noncentered": ({}, 0.95, None, {}),
    "logistic_breast_cancer": ({}, 0.9, None, {}),
    # mu is diagnosed but not stored: as phi -> 1 the level is unidentified and its
    # conditional posterior approaches the Cauchy(0, 10) prior, so its variance estimates
    # are dominated by rare excursions (not reproducible from a finite run)
    "stochastic_volatility": (
        {"length": 100, "centered_start": True},
        0.995,
        ("phi", "sigma", "log_volatility"),
        {"length": 100},
    ),
    "gp_regression": ({}, 0.9, None, {}),
    # R-hat and ESS on the symmetry-invariant predictive probabilities only: the raw
    # weights are non-identifiable (hidden-unit permutations and sign flips)
    "bnn_classification": ({"hidden": 10}, 0.9, ("probability",), {"hidden": 10}),
}
ALSO_DIAGNOSED = {"stochastic_volatility": ("mu",)}
# the reference of a model whose posterior over its shared parameters is another model's
# (computed on the better-conditioned parameterisation): alias -> (model, shared parameters)
SAME_POSTERIOR = {
    "eight_schools_centered": ("eight_schools_noncentered", ("mu", "tau", "theta")),
}


def _nuts(target, chains: int, draws: int, warmup: int, seed: int, target_accept: float):
    """NUTS on the target's unconstrained log density: constrained draws by chain, the
    number of divergent transitions and the run time."""
    kernel = NUTS(potential_fn=lambda x: -target.log_density(x), target_accept_prob=target_accept)
    mcmc = MCMC(
        kernel,
        num_warmup=warmup,
        num_samples=draws,
        num_chains=chains,
        chain_method="sequential",
        progress_bar=False,
    )
    key_init, key_run = jax.random.split(jax.random.key(seed))
    init = jax.vmap(target.init)(jax.random.split(key_init, chains))
    start = time.perf_counter()
    mcmc.run(jax.random.key_data(key_run), init_params=init, extra_fields=("diverging",))
    seconds = time.perf_counter() - start
    positions = mcmc.get_samples(group_by_chain=True)
    divergences = int(np.sum(mcmc.get_extra_fields(group_by_chain=True)["diverging"]))
    constrained = jax.vmap(jax.vmap(target.constrain))(positions)
    return {k: np.asarray(v, np.float64) for k, v in constrained.items()}, divergences, seconds


def _summarise(draws: dict, checked: dict) -> dict:
    """Moments of ``draws`` (by chain) and R-hat / bulk ESS over ``checked`` (by chain)."""
    posterior = az.convert_to_dataset(draws)
    diagnosed = az.convert_to_dataset(checked)
    rhat = az.rhat(diagnosed)
    ess = az.ess(diagnosed, method="bulk")
    mcse = az.mcse(posterior, method="mean")
    return {
        "diagnosed": sorted(checked),
        "mean": {k: posterior[k].mean(("chain", "draw")).values.tolist() for k in draws},
        "sd": {k: posterior[k].std(("chain", "draw")).values.tolist() for k in draws},
        "mcse_mean": {k: mcse[k].values.tolist() for k in draws},
        "max_rhat": float(max(np.max(rhat[k].values) for k in rhat.data_vars)),
        "min_ess_bulk": float(min(np.min(ess[k].values) for k in ess.data_vars)),
    }


def _source(chains, draws, warmup, seed, target_accept, summary, divergences, extra=""):
    return (
        f"numpyro {numpyro.__version__} NUTS on Target.log_density (float32){extra}, "
        f"{chains} chains x {draws} draws after {warmup} warmup, seed {seed}, "
        f"target_accept {target_accept}; max R-hat {summary['max_rhat']:.4f}, min bulk ESS "
        f"{summary['min_ess_bulk']:.0f}, {divergences} divergences; benchmarks/references.py"
    )


def reference_posterior(
    name: str,
    chains: int,
    draws: int,
    warmup: int,
    seed: int,
    target_accept_override: float | None = None,
) -> dict[str, object]:
    """A NUTS reference entry for a model of ``POSTERIORS``."""
    params, target_accept, stored, entry_params = POSTERIORS[name]
    target_accept = target_accept_override or target_accept
    target = bw.models.get(name, **params)
    constrained, divergences, seconds = _nuts(target, chains, draws, warmup, seed, target_accept)
    kept = {k: v for k, v in constrained.items() if stored is None or k in stored}
    checked = {**kept, **{k: constrained[k] for k in ALSO_DIAGNOSED.get(name, ())}}
    summary = _summarise(kept, checked)
    extra = f" of {name} {params}" if params != entry_params else ""
    return {
        "method": "nuts",
        "params": entry_params,
        **summary,
        "source": _source(chains, draws, warmup, seed, target_accept, summary, divergences, extra),
        "chains": chains,
        "draws": draws,
        "warmup": warmup,
        "seed": seed,
        "target_accept": target_accept,
        "divergences": divergences,
        "seconds": round(seconds, 1),
    }


def horseshoe_reference(chains: int, draws: int, warmup: int, seed: int) -> dict[str, object]:
    """NUTS on the horseshoe with the coefficients integrated out
    (``bayesian.horseshoe_marginal_model``, 24 dimensions, no funnel); the coefficients'
    moments by Rao-Blackwellisation: mean ``E[m]``, variance ``E[v] + Var[m]`` over the
    draws of the conditional mean m and variance v. ``local_scale`` is diagnosed but not
    stored (infinite posterior variance)."""
    target_accept = 0.95
    features, response = (
        jax.numpy.asarray(a, dtype=jax.numpy.float32) for a in bayesian.horseshoe_diabetes_data()
    )
    target = bw.Target.from_numpyro(bayesian.horseshoe_marginal_model, features, response)
    constrained, divergences, seconds = _nuts(target, chains, draws, warmup, seed, target_accept)
    kept = {k: constrained[k] for k in ("intercept", "noise_scale", "global_scale")}
    checked = {**kept, "log_local_scale": np.log(constrained["local_scale"])}
    checked["coefficients_mean"] = constrained["coefficients_mean"]
    summary = _summarise({**kept, "coefficients": constrained["coefficients_mean"]}, checked)
    conditional_mean = constrained["coefficients_mean"]
    variance = constrained["coefficients_var"].mean((0, 1)) + conditional_mean.var((0, 1))
    summary["sd"]["coefficients"] = np.sqrt(variance).tolist()
    extra = " of the coefficient-marginalised horseshoe, coefficients Rao-Blackwellised"
    return {
        "method": "nuts (Rao-Blackwellised)",
        "params": {},
        **summary,
        "source": _source(chains, draws, warmup, seed, target_accept, summary, divergences, extra),
        "chains": chains,
        "draws": draws,
        "warmup": warmup,
        "seed": seed,
        "target_accept": target_accept,
        "divergences": divergences,
        "seconds": round(seconds, 1),
    }


def brownian_motion_reference(points: int = 601) -> dict[str, object]:
    """Quadrature: the model is linear-Gaussian given u = log innovation_scale and
    v = log observation_scale, so ``p(u, v | y)`` is known up to a constant in closed form
    (Gaussian marginal likelihood of the 20 observations, covariance ``q^2 min(i, j) +
    r^2 I``) and the locations' conditional moments are the Gaussian conditioning formulas.
    The trapezoid rule on ``[-24, 6]^2`` (the log density at the box edge is 70 below its
    peak) gives the moments; halving the spacing gives the quadrature error."""
    observations, observed = bayesian.brownian_motion_data()
    steps = np.arange(1, observations.size + 1)
    cov = np.minimum.outer(steps, steps).astype(np.float64)
    cov_oo, cov_ao, y = cov[np.ix_(observed, observed)], cov[:, observed], observations[observed]

    def evaluate(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        q2, r2 = np.exp(2 * u)[:, None, None], np.exp(2 * v)[:, None, None]
        k = q2 * cov_oo + r2 * np.eye(y.size)
        chol = np.linalg.cholesky(k)
        alpha = np.linalg.solve(k, np.broadcast_to(y, (u.size, y.size))[..., None])[..., 0]
        log_det = 2 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(1)
        # LogNormal(0, 2) priors become N(0, 2) densities of u and v
        log_post = -0.5 * (alpha @ y + log_det) - 0.5 * (u / 2) ** 2 - 0.5 * (v / 2) ** 2
        mean = q2[:, :, 0] * (alpha @ cov_ao.T)
        solved = np.linalg.solve(k, np.broadcast_to(cov_ao.T, (u.size, *cov_ao.T.shape)))
        var = q2[:, :, 0] * np.diag(cov) - q2[:, :, 0] ** 2 * np.einsum(
            "ij,bji->bi", cov_ao, solved
        )
        return log_post, mean, var

    def moments(n: int) -> tuple[dict, dict, float]:
        grid = np.linspace(-24.0, 6.0, n)
        u, v = (a.ravel() for a in np.meshgrid(grid, grid, indexing="ij"))
        parts = [evaluate(u[i : i + 4096], v[i : i + 4096]) for i in range(0, u.size, 4096)]
        log_post, cond_mean, cond_var = (np.concatenate(p) for p in zip(*parts, strict=True))
        edge = log_post.reshape(n, n)
        edge_gap = float(
            max(edge[0].max(), edge[-1].max(), edge[:, 0].max(), edge[:, -1].max()) - edge.max()
        )
        w = np.exp(log_post - logsumexp(log_post))
        mean, sd = {}, {}
        for key, x in (("innovation_scale", np.exp(u)), ("observation_scale", np.exp(v))):
            mean[key] = float(w @ x)
            sd[key] = float(np.sqrt(w @ (x - mean[key]) ** 2))
        mean["locations"] = w @ cond_mean
        sd["locations"] = np.sqrt(w @ cond_var + w @ (cond_mean - mean["locations"]) ** 2)
        return mean, sd, edge_gap

    start = time.perf_counter()
    mean, sd, edge_gap = moments(points)
    coarse_mean, coarse_sd, _ = moments((points + 1) // 2)
    error = max(
        float(np.max(np.abs(np.asarray(a[k]) - np.asarray(b[k]))))
        for a, b in ((mean, coarse_mean), (sd, coarse_sd))
        for k in mean
    )
    seconds = time.perf_counter() - start
    return {
        "method": "quadrature",
        "params": {},
        "mean": {k: np.asarray(v).tolist() for k, v in mean.items()},
        "sd": {k: np.asarray(v).tolist() for k, v in sd.items()},
        # the quadrature error bound stands in for a Monte Carlo standard error
        "mcse_mean": {k: np.full(np.shape(v), error).tolist() for k, v in mean.items()},
        "quadrature_error": error,
        "source": (
            "quadrature over (log innovation_scale, log observation_scale): trapezoid rule "
            f"on [-24, 6]^2 with {points}^2 points (edge log density {-edge_gap:.0f} below the "
            "peak), Gaussian conditioning for the locations, moments mixed over the grid "
            f"(largest change when halving the spacing {error:.1e}); benchmarks/references.py"
        ),
        "seconds": round(seconds, 1),
    }


def _store(name: str, entry: dict) -> None:
    # re-read the file just before writing, so that runs of different models can overlap
    stored = json.loads(REFERENCES_FILE.read_text()) if REFERENCES_FILE.exists() else {}
    if entry is None:
        stored.pop(name, None)
    else:
        stored[name] = entry
    for alias, (original, shared) in SAME_POSTERIOR.items():
        if original == name and entry is not None:
            alias_entry = {
                k: {p: v for p, v in entry[k].items() if p in shared}
                if k in ("mean", "sd", "mcse_mean")
                else entry[k]
                for k in entry
            }
            alias_entry["source"] = f"same posterior as {name}: " + entry["source"]
            stored[alias] = alias_entry
    REFERENCES_FILE.parent.mkdir(exist_ok=True)
    REFERENCES_FILE.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")


def run_posteriors(args: argparse.Namespace) -> None:
    names = args.models.split(",") if args.models else [*POSTERIORS, *SPECIAL]
    for name in names:
        if name in SPECIAL:
            entry = SPECIAL[name](args)
        else:
            entry = reference_posterior(
                name, args.chains, args.draws, args.warmup, args.seed, args.target_accept
            )
        nuts = entry["method"].startswith("nuts")
        verdict = not nuts or (entry["max_rhat"] < 1.01 and entry["divergences"] == 0)
        print(
            f"{name}: {entry['source']} ({entry['seconds']} s) -> "
            + ("stored" if verdict else "NOT stored")
        )
        _store(name, entry if verdict else None)


SPECIAL = {
    "horseshoe_diabetes": lambda a: horseshoe_reference(a.chains, a.draws, a.warmup, a.seed),
    "brownian_motion": lambda a: brownian_motion_reference(),
}


def run_quadrature(_: argparse.Namespace) -> None:
    truth = energies._double_well_factor_truth()
    fine = _grid.trapezoid_log_z_1d(energies.double_well_log_factor, np.linspace(-6, 6, 48001))
    print(f"double-well factor: log Z1 = {truth['log_z']:.12f}, Z1 = {np.exp(truth['log_z']):.6f}")
    print(f"  halved spacing changes log Z1 by {fine - truth['log_z']:.2e}")
    tv = _grid.interpolation_tv_1d(energies.double_well_log_factor, energies._WELL_SAMPLING_GRID)
    print(f"  sampling interpolant total-variation error {tv:.2e}")
    print(f"  manywell dim 32: log Z = {bw.models.get('manywell').log_z:.4f}")
    for k in (1, 2, 3, 4):
        log_f = energies.rezende_log_density_numpy(k)
        truth = energies._rezende_truth(k)
        points = tuple(2 * p - 1 for p in energies._REZENDE_QUADRATURE_POINTS)
        fine = _grid.trapezoid_log_z_2d(log_f, *energies._rezende_grids(points))
        tv = _grid.interpolation_tv_2d(
            log_f, *energies._rezende_grids(energies._REZENDE_SAMPLING_POINTS)
        )
        print(
            f"rezende_u{k}: log Z = {truth['log_z']:.10f} "
            f"(halved spacing: {fine - truth['log_z']:+.1e}), mean {np.round(truth['mean'], 4)}, "
            f"sd {np.round(truth['sd'], 4)}, sampling TV {tv:.1e}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    posteriors = commands.add_parser("posteriors")
    posteriors.add_argument("--models", default="")
    posteriors.add_argument("--chains", type=int, default=4)
    posteriors.add_argument("--draws", type=int, default=5000)
    posteriors.add_argument("--warmup", type=int, default=2000)
    posteriors.add_argument("--seed", type=int, default=0)
    posteriors.add_argument(
        "--target-accept", type=float, default=None, help="override the model's NUTS target"
    )
    commands.add_parser("quadrature")
    args = parser.parse_args()
    {"posteriors": run_posteriors, "quadrature": run_quadrature}[args.command](args)


if __name__ == "__main__":
    main()
