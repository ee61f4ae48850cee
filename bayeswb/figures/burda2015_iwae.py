"""Burda, Grosse and Salakhutdinov (2016), "Importance Weighted Autoencoders", Table 1
(one stochastic layer): VAE and IWAE trained with k = 1, 5, 50 samples, compared by the
held-out log-likelihood estimated by importance sampling with k = 5000.

Here on binarized scikit-learn digits (8x8, the ``vae_digits`` model: latent dim 4, tanh
MLPs with two hidden layers of 64 units) instead of MNIST, so the values differ from the
paper's; what can be compared is the ordering (IWAE improves with k, more than the VAE
does) and the size of the gaps. Every run starts from the same initial parameters and
trains for the same number of Adam steps (:func:`bayeswb.samplers.iwae.train`); "VAE k"
averages the ELBO over k draws, "IWAE k" is the k-sample bound; at k = 1 they are the same
objective and are trained once. Gains over the VAE k = 1 run are paired over test images,
with their standard errors.
"""

from __future__ import annotations

import math
import pathlib

import jax
import numpy as np
import pandas as pd

TITLE = "VAE vs IWAE held-out log-likelihood (binarized digits)"
PAPER = "Burda, Grosse and Salakhutdinov (2016), Importance Weighted Autoencoders, Table 1"
FULL_RUNTIME = "about 10 min on 2 CPU cores (9 min measured with the cores shared by ~8 jobs)"

KS = (1, 5, 50)
PUBLISHED = {("VAE", 1): -86.76, ("IWAE", 50): -84.78}  # MNIST, one stochastic layer
FULL = {"train_steps": 10_000, "eval_k": 5000, "num_test": 300}
QUICK = {"train_steps": 150, "eval_k": 500, "num_test": 100}


def compute(quick: bool = False, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Train the five distinct runs and estimate each one's test log-likelihood.

    Returns ``"results"`` (one row per method and k: test log-likelihood, its standard
    error across test images, the final training bound, the paired gain over VAE k = 1)
    and ``"published"`` (VAE k = 1, IWAE k = 50 and their gap next to the MNIST values).
    """
    from tqdm.auto import tqdm

    from bayeswb.models.vae_digits import VAEDigits
    from bayeswb.samplers.iwae import Objective, train

    settings = QUICK if quick else FULL
    model = VAEDigits(latent_dim=4, hidden=64)
    init_key, train_key, eval_key = jax.random.split(jax.random.key(seed), 3)
    params0 = model.init_params(init_key)
    x_test = model.x_test[: settings["num_test"]]
    runs = [("VAE", k) for k in KS] + [("IWAE", k) for k in KS if k > 1]
    per_image, rows = {}, []
    for method, k in tqdm(runs, desc="burda2015_iwae", disable=None):
        objective = Objective("elbo" if method == "VAE" else "iwae", k)
        params, trace = train(train_key, model, objective, settings["train_steps"], params=params0)
        values = np.asarray(model.log_marginal(params, eval_key, x_test, settings["eval_k"]))
        per_image[method, k] = values
        tail = max(1, settings["train_steps"] // 10)
        rows.append(
            {
                "method": method,
                "k": k,
                "train_steps": settings["train_steps"],
                "eval_k": settings["eval_k"],
                "num_test": len(x_test),
                "test_log_likelihood": float(values.mean()),
                "se": float(values.std(ddof=1) / math.sqrt(len(values))),
                "final_train_bound": float(np.mean(trace["bound"][-tail:])),
            }
        )
    rows.append({**rows[0], "method": "IWAE"})  # k = 1: the same objective and run
    per_image["IWAE", 1] = per_image["VAE", 1]
    results = pd.DataFrame(rows).sort_values(["method", "k"], ascending=[False, True])
    base = per_image["VAE", 1]
    gains = [per_image[m, k] - base for m, k in zip(results.method, results.k, strict=True)]
    results["gain_vs_vae_k1"] = [float(g.mean()) for g in gains]
    results["gain_se"] = [float(g.std(ddof=1) / math.sqrt(len(g))) for g in gains]
    results = results.reset_index(drop=True)

    ours = results.set_index(["method", "k"]).test_log_likelihood.to_dict()
    gap = ours["IWAE", 50] - ours["VAE", 1]
    published = pd.DataFrame(
        [
            {
                "setting": f"{m} k={k} (ours: digits 8x8; paper: MNIST)",
                "metric": "test log-likelihood (nats)",
                "ours": ours[m, k],
                "published": value,
            }
            for (m, k), value in PUBLISHED.items()
        ]
        + [
            {
                "setting": "IWAE k=50 minus VAE k=1",
                "metric": "gain (nats)",
                "ours": gap,
                "published": PUBLISHED["IWAE", 50] - PUBLISHED["VAE", 1],
            }
        ]
    )
    published["difference"] = published["ours"] - published["published"]
    return {"results": results, "published": published}


def plot(tables: dict[str, pd.DataFrame], out_dir: pathlib.Path) -> list[pathlib.Path]:
    """Test log-likelihood against k for VAE and IWAE, with standard-error bars, and the
    paired gain over VAE k = 1; writes burda2015_iwae.png and .pdf."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = tables["results"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for method, marker in (("VAE", "o"), ("IWAE", "s")):
        rows = results[results.method == method]
        axes[0].errorbar(rows.k, rows.test_log_likelihood, rows.se, marker=marker, label=method)
        axes[1].errorbar(rows.k, rows.gain_vs_vae_k1, rows.gain_se, marker=marker, label=method)
    eval_k = int(results.eval_k.iloc[0])
    ylabel = f"test log p(x) (IS, k={eval_k})"
    axes[0].set(xscale="log", xlabel="k (training samples)", ylabel=ylabel)
    axes[1].set(xscale="log", xlabel="k (training samples)", ylabel="gain over VAE k=1 (nats)")
    axes[1].axhline(0.0, color="grey", lw=0.8)
    axes[0].legend()
    fig.suptitle("VAE vs IWAE on binarized digits (Burda et al. 2016, Table 1 analogue)")
    fig.tight_layout()
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "burda2015_iwae.png", out_dir / "burda2015_iwae.pdf"]
    for path in paths:
        fig.savefig(path)
    plt.close(fig)
    return paths
