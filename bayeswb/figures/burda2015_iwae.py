"""Burda, Grosse and Salakhutdinov (2016), "Importance Weighted Autoencoders", Table 1
(one and two stochastic layers): VAE and IWAE trained with k = 1, 5, 50 samples, compared
by the held-out log-likelihood estimated by importance sampling with k = 5000.

Here on binarized scikit-learn digits (8x8, the ``vae_digits`` model) instead of MNIST, so
the values differ from the paper's; what can be compared is the ordering (IWAE improves
with k, more than the VAE does; two stochastic layers beat one) and the size of the gaps.
The architectures are the paper's scaled down for 64 pixels: one stochastic layer of 4
units (paper: 50) behind tanh MLPs with two hidden layers of 64 units (paper: 200); two
stochastic layers x -> h1 (8 units) -> h2 (4 units) (paper: 100 and 50), with two hidden
layers of 64 units between x and h1 and of 32 units between h1 and h2 (paper: 100 and
50). Every run of one architecture starts from the same initial parameters and trains for
the same number of Adam steps (:func:`bayeswb.models.iwae.train`); "VAE k" averages the
ELBO over k draws, "IWAE k" is the k-sample bound; at k = 1 they are the same objective
and are trained once. Gains over the VAE k = 1 run of the same architecture are paired
over test images (same images and evaluation key), with their standard errors.
"""

from __future__ import annotations

import math
import pathlib
from typing import Any

import jax
import numpy as np
import pandas as pd

from bayeswb.core.files import atomic_path

TITLE = "VAE vs IWAE held-out log-likelihood (binarized digits)"
PAPER = "Burda, Grosse and Salakhutdinov (2016), Importance Weighted Autoencoders, Table 1"
FULL_RUNTIME = "about 15 min on 2 CPU cores (measured for one and two stochastic layers)"

KS = (1, 5, 50)
ARCHITECTURES = {
    1: {"layers": 1, "latent_dim": 4, "hidden": 64},
    2: {"layers": 2, "latent_dim": 8, "top_dim": 4, "hidden": 64},
}
# MNIST, Burda et al. (2016) Table 1: (stochastic layers, method, k) -> test log-likelihood
PUBLISHED = {
    (1, "VAE", 1): -86.76,
    (1, "IWAE", 50): -84.78,
    (2, "VAE", 1): -85.33,
    (2, "IWAE", 50): -82.90,
}
# the distinct training runs per architecture (IWAE k = 1 is VAE k = 1)
FULL_RUNS = [("VAE", k) for k in KS] + [("IWAE", k) for k in KS if k > 1]
FULL: dict[str, Any] = {"train_steps": 10_000, "eval_k": 5000, "num_test": 300, "runs": FULL_RUNS}
QUICK: dict[str, Any] = {
    "train_steps": 150,
    "eval_k": 500,
    "num_test": 100,
    "runs": [("VAE", 1), ("IWAE", 50)],
}


def compute(quick: bool = False, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Train the distinct runs (VAE k, IWAE k > 1, for one and two stochastic layers) and
    estimate each one's test log-likelihood. Quick mode trains VAE k = 1 and IWAE k = 50.

    Returns ``"results"`` (one row per layers, method and k: test log-likelihood, its
    standard error across test images, the final training bound, the paired gain over VAE
    k = 1 of the same architecture) and ``"published"`` (VAE k = 1, IWAE k = 50, their gap,
    and the gain of two layers over one, next to the MNIST values).
    """
    from bayeswb.core.progress import tqdm
    from bayeswb.models.iwae import Objective, train
    from bayeswb.models.vae_digits import VAEDigits

    settings = QUICK if quick else FULL
    init_key, train_key, eval_key = jax.random.split(jax.random.key(seed), 3)
    runs = [(layers, method, k) for layers in ARCHITECTURES for method, k in settings["runs"]]
    models = {layers: VAEDigits(**arch) for layers, arch in ARCHITECTURES.items()}
    params0 = {layers: model.init_params(init_key) for layers, model in models.items()}
    per_image, rows = {}, []
    for layers, method, k in tqdm(runs, desc="burda2015_iwae", disable=None):
        model = models[layers]
        objective = Objective("elbo" if method == "VAE" else "iwae", k)
        params, trace = train(
            train_key, model, objective, settings["train_steps"], params=params0[layers]
        )
        x_test = model.x_test[: settings["num_test"]]
        values = np.asarray(model.log_marginal(params, eval_key, x_test, settings["eval_k"]))
        per_image[layers, method, k] = values
        tail = max(1, settings["train_steps"] // 10)
        row = {
            "layers": layers,
            "method": method,
            "k": k,
            "train_steps": settings["train_steps"],
            "eval_k": settings["eval_k"],
            "num_test": len(x_test),
            "test_log_likelihood": float(values.mean()),
            "se": float(values.std(ddof=1) / math.sqrt(len(values))),
            "final_train_bound": float(np.mean(trace["bound"][-tail:])),
        }
        rows.append(row)
        if k == 1:  # the same objective and run
            rows.append({**row, "method": "IWAE"})
            per_image[layers, "IWAE", 1] = values
    results = pd.DataFrame(rows).sort_values(
        ["layers", "method", "k"], ascending=[True, False, True]
    )
    keys = list(zip(results.layers, results.method, results.k, strict=True))
    gains = [per_image[key] - per_image[key[0], "VAE", 1] for key in keys]
    results["gain_vs_vae_k1"] = [float(g.mean()) for g in gains]
    results["gain_se"] = [float(g.std(ddof=1) / math.sqrt(len(g))) for g in gains]
    results = results.reset_index(drop=True)
    return {"results": results, "published": _published(results)}


def _published(results: pd.DataFrame) -> pd.DataFrame:
    ours = results.set_index(["layers", "method", "k"]).test_log_likelihood.to_dict()
    rows = [
        {
            "setting": f"{layers} layer{'s' * (layers > 1)}, {method} k={k} (ours: digits 8x8; "
            "paper: MNIST)",
            "metric": "test log-likelihood (nats)",
            "ours": ours[layers, method, k],
            "published": value,
        }
        for (layers, method, k), value in PUBLISHED.items()
    ]
    gap = lambda table, layers: table[layers, "IWAE", 50] - table[layers, "VAE", 1]
    depth = lambda table, method, k: table[2, method, k] - table[1, method, k]
    for layers in ARCHITECTURES:
        rows.append(
            {
                "setting": f"{layers} layer{'s' * (layers > 1)}, IWAE k=50 minus VAE k=1",
                "metric": "gain (nats)",
                "ours": gap(ours, layers),
                "published": gap(PUBLISHED, layers),
            }
        )
    for method, k in (("VAE", 1), ("IWAE", 50)):
        rows.append(
            {
                "setting": f"{method} k={k}, 2 layers minus 1 layer",
                "metric": "gain (nats)",
                "ours": depth(ours, method, k),
                "published": depth(PUBLISHED, method, k),
            }
        )
    published = pd.DataFrame(rows)
    published["difference"] = published["ours"] - published["published"]
    return published


def plot(tables: dict[str, pd.DataFrame], out_dir: pathlib.Path) -> list[pathlib.Path]:
    """Test log-likelihood against k for VAE and IWAE with one (solid) and two (dashed)
    stochastic layers, with standard-error bars, and the paired gain over VAE k = 1 of the
    same architecture; writes burda2015_iwae.png and .pdf."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = tables["results"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for layers, style in ((1, "-"), (2, "--")):
        for method, marker, color in (("VAE", "o", "C0"), ("IWAE", "s", "C1")):
            rows = results[(results.method == method) & (results.layers == layers)]
            label = f"{method}, {layers} stochastic layer{'s' * (layers > 1)}"
            kwargs = {"marker": marker, "color": color, "ls": style, "label": label}
            axes[0].errorbar(rows.k, rows.test_log_likelihood, rows.se, **kwargs)
            axes[1].errorbar(rows.k, rows.gain_vs_vae_k1, rows.gain_se, **kwargs)
    eval_k = int(results.eval_k.iloc[0])
    ylabel = f"test log p(x) (IS, k={eval_k})"
    axes[0].set(xscale="log", xlabel="k (training samples)", ylabel=ylabel)
    axes[1].set(xscale="log", xlabel="k (training samples)", ylabel="gain over VAE k=1 (nats)")
    axes[1].axhline(0.0, color="grey", lw=0.8)
    axes[0].legend(fontsize=7)
    fig.suptitle("VAE vs IWAE on binarized digits (Burda et al. 2016, Table 1 analogue)")
    fig.tight_layout()
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "burda2015_iwae.png", out_dir / "burda2015_iwae.pdf"]
    for path in paths:
        with atomic_path(path) as temporary:
            fig.savefig(temporary)
    plt.close(fig)
    return paths
