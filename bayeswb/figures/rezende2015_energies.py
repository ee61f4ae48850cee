"""Flows on the 2-D energies U1-U4 of Rezende and Mohamed (2015, "Variational Inference with
Normalizing Flows", ICML, Fig. 3): the density learned by ``flow_vi`` with planar flows of
K = 2, 8 and 32 layers (their Fig. 3b), and by ``flow_is`` (a rational-quadratic-spline
coupling flow trained by reverse KL, the Boltzmann generator's "training by energy"), next
to the true density ``exp(-U) / Z``.

Scores per target and flow, from ``num_runs`` independent runs of ``num_samples`` draws:
the reverse KL ``KL(q || p) = log Z - ELBO`` (their Fig. 3c; ``log Z`` exact, by
quadrature, from the model registry; ELBO = ``mean log w`` over a run's draws, with its
standard error across runs), the ESS fraction of the importance weights (Kish ESS /
``num_samples``), PSIS k-hat, and the error of the importance-weighted ``log Z``.
Training follows the paper's recipe where it is stated: base N(0, I), planar layers
``z + u tanh(w^T z + b)``, the annealed objective ``E_q[log q - beta_t log p]`` with
``beta_t = min(1, 0.01 + t / T)``; we use Adam (gradients clipped to norm 10) instead of
RMSprop, and, to fit a shared 2-core machine, 10000 updates of 32 draws with T = 5000
(full mode) instead of the paper's 500000 updates with T = 10000. The learned densities
are histograms of the flow's own (unweighted) draws on the paper's window [-4, 4]^2.

Known failure: the registry's U4 has a NaN gradient at z1 < -26 (float32 overflow of the
exponential in its sigmoid ``w3``); a planar run that sends one of a step's draws there
skips that step and every later one (training freezes), which shows as an enormous KL.

Fig. 3c of the paper is a plot without a table of numbers, so there is no "published"
table. The four targets of one flow share one compiled program (``lax.map`` over a
``lax.switch`` of the four log densities, each a registry target), so a flow setting
compiles once.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from bayeswb.core.files import atomic_path

TITLE = "Normalizing flows on the Rezende-Mohamed energies U1-U4"
PAPER = "Rezende and Mohamed (2015), Variational Inference with Normalizing Flows, ICML, Fig. 3"
FULL_RUNTIME = "about 5 min on 2 shared CPU cores (274 s at load ~8, 12.5 min at load ~18)"

TARGETS = ("rezende_u1", "rezende_u2", "rezende_u3", "rezende_u4")
PLANAR_LAYERS = (2, 8, 32)
WINDOW = 4.0  # the paper's plots show [-4, 4]^2


def _settings(quick: bool) -> dict:
    if quick:
        return {  # compile-bound: one program per flow; few training steps and draws
            "runs": 2,
            "samples": 2000,
            "steps": 300,
            "anneal": 150,
            "mc": 32,
            "bins": 50,
            "is_layers": 4,
        }
    return {
        "runs": 4,
        "samples": 50000,
        "steps": 10000,
        "anneal": 5000,
        "mc": 32,
        "bins": 100,
        "is_layers": 8,
    }


def _methods(quick: bool) -> list[tuple[str, str, dict]]:
    """(label, sampler, options) per flow."""
    s = _settings(quick)
    planar = {
        "flow_type": "planar",
        "num_warmup": s["steps"],
        "num_anneal_steps": s["anneal"],
        "num_mc_samples": s["mc"],
        "learning_rate": 5e-3 if quick else 1e-3,
        "max_grad_norm": 10.0,
    }
    methods = [(f"planar K={k}", "flow_vi", {**planar, "num_layers": k}) for k in PLANAR_LAYERS]
    spline = {
        "flow_type": "spline_coupling",
        "num_layers": s["is_layers"],
        "hidden_width": 32,
        "spline_interval": 5.0,
        "objective": "reverse_kl",
        "num_warmup": s["steps"],
        "num_mc_samples": s["mc"],
        "learning_rate": 3e-3 if quick else 1e-3,
        "max_grad_norm": 10.0,
    }
    methods.append(("flow_is spline", "flow_is", spline))
    return methods


def _run_on_all_targets(sampler: str, options: dict, quick: bool, key: jax.Array) -> tuple:
    """One compiled program: the sampler's ``run`` on each of the four targets in turn."""
    import bayeswb as bw
    from bayeswb.core.target import Target

    s = _settings(quick)
    spec = bw.samplers.get(sampler)
    config = spec.make_config(num_chains=s["runs"], num_samples=s["samples"], **options)
    log_densities = [bw.models.get(name).log_density for name in TARGETS]

    def one(inputs: tuple[jax.Array, jax.Array]) -> tuple:
        run_key, index = inputs
        target = Target.from_logdensity(
            lambda x: jax.lax.switch(index, log_densities, x), dim=2, name="rezende"
        )
        draws = spec.run(run_key, target, config)
        return draws.positions, draws.log_weights, draws.log_z, draws.path_stats

    keys = jax.random.split(key, len(TARGETS))
    program = jax.jit(lambda k: jax.lax.map(one, (k, jnp.arange(len(TARGETS)))))
    return jax.device_get(program(keys))


def _histogram(positions: np.ndarray, bins: int) -> np.ndarray:
    edges = np.linspace(-WINDOW, WINDOW, bins + 1)
    counts, _, _ = np.histogram2d(positions[:, 0], positions[:, 1], bins=(edges, edges))
    area = (edges[1] - edges[0]) ** 2
    return counts / (positions.shape[0] * area)


def _density_rows(target: str, method: str, density: np.ndarray) -> pd.DataFrame:
    bins = density.shape[0]
    edges = np.linspace(-WINDOW, WINDOW, bins + 1)
    centers = 0.5 * (edges[1:] + edges[:-1])
    x1, x2 = np.meshgrid(centers, centers, indexing="ij")
    return pd.DataFrame(
        {
            "target": target,
            "method": method,
            "x1": x1.ravel(),
            "x2": x2.ravel(),
            "density": density.ravel(),
        }
    )


def compute(quick: bool = False, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Train and score every flow on U1-U4. Tables: ``results`` (target, method, K, runs,
    samples, log_z_true, elbo, elbo_se, kl, kl_se, ess_fraction, pareto_k_max,
    log_z_error, train_steps) and ``densities`` (target, method, x1, x2, density on the
    plot grid, ``method == "true"`` for ``exp(-U) / Z``)."""
    import bayeswb as bw
    from bayeswb.core.log_evidence import combine_log_z
    from bayeswb.core.progress import tqdm

    s = _settings(quick)
    rows, densities = [], []
    for name in TARGETS:
        target = bw.models.get(name)
        bins = s["bins"]
        edges = np.linspace(-WINDOW, WINDOW, bins + 1)
        centers = 0.5 * (edges[1:] + edges[:-1])
        x1, x2 = np.meshgrid(centers, centers, indexing="ij")
        grid = jnp.stack([x1.ravel(), x2.ravel()], axis=1)
        lp = np.asarray(jax.vmap(target.log_density)(grid)).reshape(bins, bins)
        densities.append(_density_rows(name, "true", np.exp(lp - target.log_z)))
    methods = _methods(quick)
    for number, (label, sampler, options) in enumerate(tqdm(methods, desc="flows")):
        key = jax.random.fold_in(jax.random.key(seed), number)
        positions, log_weights, log_z, path = _run_on_all_targets(sampler, options, quick, key)
        for index, name in enumerate(TARGETS):
            true_log_z = bw.models.get(name).log_z
            assert true_log_z is not None  # every target of this figure has an exact log Z
            elbo = np.asarray(path["elbo"][index], dtype=np.float64).ravel()
            runs = elbo.size
            # a run with a draw of zero weight has ELBO -inf; its spread is then unknown
            finite = bool(np.all(np.isfinite(elbo)))
            elbo_se = float(np.std(elbo, ddof=1) / np.sqrt(runs)) if finite else np.inf
            run_log_z = np.asarray(log_z[index], dtype=np.float64)
            pooled_log_z, _ = combine_log_z(run_log_z)
            assert pooled_log_z is not None  # the runs made estimates
            rows.append(
                {
                    "target": name,
                    "method": label,
                    "K": options["num_layers"],
                    "runs": runs,
                    "samples": s["samples"],
                    "train_steps": options["num_warmup"],
                    "log_z_true": true_log_z,
                    "elbo": float(np.mean(elbo)),
                    "elbo_se": elbo_se,
                    "kl": true_log_z - float(np.mean(elbo)),
                    "kl_se": elbo_se,
                    "ess_fraction": float(np.mean(path["ess"][index]) / s["samples"]),
                    "pareto_k_max": float(np.max(path["pareto_k"][index])),
                    "log_z_error": pooled_log_z - true_log_z,
                }
            )
            draws = np.asarray(positions[index]).reshape(-1, 2)
            densities.append(_density_rows(name, label, _histogram(draws, s["bins"])))
    return {"results": pd.DataFrame(rows), "densities": pd.concat(densities, ignore_index=True)}


def plot(tables: dict[str, pd.DataFrame], out_dir: pathlib.Path) -> list[pathlib.Path]:
    """A grid of panels: one row per target, the true density then each flow's, each flow
    panel titled with its KL (nats) and ESS fraction; written as rezende2015_energies.png
    and .pdf."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results, densities = tables["results"], tables["densities"]
    methods = ["true", *dict.fromkeys(results["method"])]
    targets = list(dict.fromkeys(densities["target"]))
    fig, axes = plt.subplots(
        len(targets),
        len(methods),
        figsize=(2.1 * len(methods), 2.1 * len(targets)),
        squeeze=False,
    )
    for row, target in enumerate(targets):
        for column, method in enumerate(methods):
            ax = axes[row, column]
            cells = densities[(densities["target"] == target) & (densities["method"] == method)]
            bins = int(round(np.sqrt(len(cells))))
            image = cells["density"].to_numpy().reshape(bins, bins).T
            ax.imshow(
                image,
                origin="lower",
                extent=(-WINDOW, WINDOW, -WINDOW, WINDOW),
                cmap="viridis",
                interpolation="nearest",
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if method == "true":
                title = "true exp(-U)/Z"
                ax.set_ylabel(target.replace("rezende_", "").upper())
            else:
                score = results[(results["target"] == target) & (results["method"] == method)]
                kl, ess = score["kl"].iloc[0], score["ess_fraction"].iloc[0]
                title = f"{method}\nKL {kl:.2f}, ESS {ess:.2f}"
            ax.set_title(title, fontsize=7)
    fig.suptitle("Rezende & Mohamed (2015) Fig. 3: flows on U1-U4", fontsize=9)
    fig.tight_layout()
    paths = [out_dir / "rezende2015_energies.png", out_dir / "rezende2015_energies.pdf"]
    for path in paths:
        with atomic_path(path) as temporary:
            fig.savefig(temporary, dpi=120)
    plt.close(fig)
    return paths
