"""Compute the reference posterior moments of the registry's numpyro models, and check the
quadrature ground truth of the low-dimensional energies.

Reference posteriors: numpyro's NUTS on each target's own unconstrained log density
(``-Target.log_density`` as the potential), several chains, a long run; the moments of the
constrained parameters are stored in ``models/data/references.json`` together with how they
were made (sampler, chains, draws, warmup, seed, target acceptance, max R-hat, min bulk ESS,
divergences). A model is stored only if every R-hat is below 1.01 and no transition
diverged; otherwise the script says so and stores nothing for it.

Usage::

    python benchmarks/references.py posteriors [--models a,b] [--chains 4] [--draws 5000]
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
from numpyro.infer import MCMC, NUTS

import bayeswb as bw
from bayeswb.models import _grid, energies

REFERENCES_FILE = (
    pathlib.Path(__file__).resolve().parent.parent / "models" / "data" / "references.json"
)

# model name -> (factory parameters, NUTS target acceptance)
POSTERIORS = {
    "eight_schools_noncentered": ({}, 0.95),
    "logistic_breast_cancer": ({}, 0.9),
    "horseshoe_diabetes": ({}, 0.99),
    "stochastic_volatility": ({"length": 100}, 0.99),
    "brownian_motion": ({"noncentered": True}, 0.95),
    "gp_regression": ({}, 0.9),
}
# the reference of a model whose posterior over its shared parameters is another model's
# (computed on the better-conditioned parameterisation): alias -> (model, shared parameters)
SAME_POSTERIOR = {
    "eight_schools_centered": ("eight_schools_noncentered", ("mu", "tau", "theta")),
    "brownian_motion": (
        "brownian_motion",
        ("innovation_scale", "observation_scale", "locations"),
    ),
}


def reference_posterior(
    name: str, chains: int, draws: int, warmup: int, seed: int
) -> dict[str, object]:
    params, target_accept = POSTERIORS[name]
    target = bw.models.get(name, **params)
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
    posterior = az.convert_to_dataset(
        {k: np.asarray(v, np.float64) for k, v in constrained.items()}
    )
    rhat = az.rhat(posterior)
    ess = az.ess(posterior, method="bulk")
    mcse = az.mcse(posterior, method="mean")
    max_rhat = float(max(np.max(rhat[k].values) for k in rhat.data_vars))
    min_ess = float(min(np.min(ess[k].values) for k in ess.data_vars))
    entry = {
        "params": params,
        "mean": {k: posterior[k].mean(("chain", "draw")).values.tolist() for k in constrained},
        "sd": {k: posterior[k].std(("chain", "draw")).values.tolist() for k in constrained},
        "mcse_mean": {k: mcse[k].values.tolist() for k in constrained},
        "source": (
            f"numpyro {__import__('numpyro').__version__} NUTS on Target.log_density "
            f"(float32), {chains} chains x {draws} draws after {warmup} warmup, seed {seed}, "
            f"target_accept {target_accept}; max R-hat {max_rhat:.4f}, min bulk ESS "
            f"{min_ess:.0f}, {divergences} divergences; benchmarks/references.py"
        ),
        "max_rhat": max_rhat,
        "min_ess_bulk": min_ess,
        "divergences": divergences,
        "seconds": round(seconds, 1),
    }
    return entry


def run_posteriors(args: argparse.Namespace) -> None:
    names = args.models.split(",") if args.models else list(POSTERIORS)
    stored = json.loads(REFERENCES_FILE.read_text()) if REFERENCES_FILE.exists() else {}
    for name in names:
        entry = reference_posterior(name, args.chains, args.draws, args.warmup, args.seed)
        verdict = entry["max_rhat"] < 1.01 and entry["divergences"] == 0
        print(
            f"{name}: {entry['source']} ({entry['seconds']} s) -> "
            + ("stored" if verdict else "NOT stored")
        )
        if verdict:
            stored[name] = entry
            for alias, (original, shared) in SAME_POSTERIOR.items():
                if original == name:
                    alias_entry = {
                        k: {p: v for p, v in entry[k].items() if p in shared}
                        if k in ("mean", "sd", "mcse_mean")
                        else entry[k]
                        for k in entry
                    }
                    alias_entry["source"] = (
                        f"same posterior as {name} {entry['params']}: " + entry["source"]
                    )
                    stored[alias] = alias_entry
        else:
            stored.pop(name, None)
        REFERENCES_FILE.parent.mkdir(exist_ok=True)
        REFERENCES_FILE.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")


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
    commands.add_parser("quadrature")
    args = parser.parse_args()
    {"posteriors": run_posteriors, "quadrature": run_quadrature}[args.command](args)


if __name__ == "__main__":
    main()
