"""Rainforth et al. (2018), "Tighter Variational Bounds are Not Necessarily Better": the
gradient signal-to-noise ratio ``SNR = |E[g]| / sd[g]`` of the encoder
(inference network) and decoder (generative network) as the number of samples K grows,
for IWAE, MIWAE, CIWAE and PIWAE (their SNR figures).

Here on the ``vae_digits`` model (binarized 8x8 digits, latent dim 4, 64-unit tanh MLPs),
at parameters reached by a short IWAE(k=5) training run; every objective's gradient is
drawn ``num_draws`` times on the same 8 training images at those fixed parameters, and the
per-parameter SNRs are summarised by their median (and mean) over each network. Settings:
IWAE(K); MIWAE(M=4, K); CIWAE(beta=0.5, K); PIWAE(M=4, K) (so MIWAE and PIWAE use 4K
draws per image; PIWAE's encoder gradient is MIWAE's, so their encoder rows coincide).
Their Theorem 1 predicts decoder SNR growing as sqrt(MK) and IWAE encoder SNR falling as
sqrt(M/K); the ``published`` table compares the fitted log-log slopes over K >= 10 (over
all K in quick mode) with those rates (the paper gives the rates and plots, not a table).
An SNR estimated from n draws cannot go much below ~0.67 / sqrt(n) (the median of |t| /
sqrt(n) when the true mean is zero): the ``snr_floor`` column.
"""

from __future__ import annotations

import math
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from bayeswb.core.files import atomic_path

TITLE = "Gradient SNR against K for IWAE, MIWAE, CIWAE, PIWAE"
PAPER = "Rainforth et al. (2018), Tighter Variational Bounds are Not Necessarily Better (SNR)"
FULL_RUNTIME = "about 15 min on 2 CPU cores (16 min measured with the cores shared by ~8 jobs)"

M_GROUPS = 4
BETA = 0.5
FULL: dict[str, Any] = {"ks": (1, 3, 10, 30, 100, 300), "num_draws": 500, "train_steps": 2000}
QUICK: dict[str, Any] = {"ks": (1, 30), "num_draws": 64, "train_steps": 150}


def _objectives(k: int):
    from bayeswb.models.iwae import Objective

    return {
        "IWAE": Objective("iwae", k),
        "MIWAE": Objective("miwae", k, num_groups=M_GROUPS),
        "CIWAE": Objective("ciwae", k, beta=BETA),
        "PIWAE": Objective("piwae", k, num_groups=M_GROUPS),
    }


def compute(quick: bool = False, seed: int = 0) -> dict[str, pd.DataFrame]:
    """SNR of encoder and decoder gradients for each objective and K.

    Returns ``"results"`` (one row per method, K and network: median and mean SNR, the
    SNR floor) and ``"published"`` (IWAE log-log slopes against Theorem 1's rates).
    """
    from bayeswb.core.progress import tqdm
    from bayeswb.models.iwae import Objective, gradient_draws, snr, train
    from bayeswb.models.vae_digits import VAEDigits

    settings = QUICK if quick else FULL
    model = VAEDigits(latent_dim=4, hidden=64)
    train_key, snr_key = jax.random.split(jax.random.key(seed))
    params, _ = train(train_key, model, Objective("iwae", 5), settings["train_steps"])
    x = jnp.asarray(model.x_train[:8])
    floor = 0.6745 / math.sqrt(settings["num_draws"])
    cells = [(k, name, obj) for k in settings["ks"] for name, obj in _objectives(k).items()]
    rows = []
    for k, name, objective in tqdm(cells, desc="rainforth2018_snr", disable=None):
        encoder, decoder = gradient_draws(
            snr_key, model, params, objective, x, num_draws=settings["num_draws"]
        )
        for network, draws in (("encoder", encoder), ("decoder", decoder)):
            values = snr(draws)
            rows.append(
                {
                    "method": name,
                    "K": k,
                    "M": objective.num_groups,
                    "beta": objective.beta if name == "CIWAE" else np.nan,
                    "total_samples": objective.total_samples,
                    "network": network,
                    "snr_median": float(np.median(values)),
                    "snr_mean": float(values.mean()),
                    "num_draws": settings["num_draws"],
                    "snr_floor": floor,
                }
            )
    results = pd.DataFrame(rows)
    published = []
    for network, rate in (("decoder", 0.5), ("encoder", -0.5)):
        rows = results[(results.method == "IWAE") & (results.network == network)]
        if np.sum(rows.K >= 10) >= 2:  # quick mode has too few K for that: fit all
            rows = rows[rows.K >= 10]
        slope = float(np.polyfit(np.log(rows.K), np.log(rows.snr_median), 1)[0])
        published.append(
            {
                "setting": f"IWAE {network}, K from {rows.K.min()} to {rows.K.max()}",
                "metric": "slope of log median SNR vs log K (Theorem 1 rate)",
                "ours": slope,
                "published": rate,
                "difference": slope - rate,
            }
        )
    return {"results": results, "published": pd.DataFrame(published)}


def plot(tables: dict[str, pd.DataFrame], out_dir: pathlib.Path) -> list[pathlib.Path]:
    """Median SNR against K (log-log), encoder and decoder panels, one line per method;
    writes rainforth2018_snr.png and .pdf."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = tables["results"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharex=True)
    for ax, network in zip(axes, ("encoder", "decoder"), strict=True):
        for method, rows in results[results.network == network].groupby("method", sort=False):
            dashed = method == "PIWAE"  # its encoder gradient is MIWAE's: the lines coincide
            style = {"ls": "--", "marker": "x"} if dashed else {"marker": "o"}
            ax.plot(rows.K, rows.snr_median, label=method, **style)
        ax.axhline(results.snr_floor.iloc[0], color="grey", ls=":", label="estimation floor")
        ax.set(xscale="log", yscale="log", xlabel="K", ylabel="median SNR", title=network)
    axes[0].legend(fontsize=8)
    fig.suptitle("Gradient SNR on vae_digits (Rainforth et al. 2018 analogue)")
    fig.tight_layout()
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "rainforth2018_snr.png", out_dir / "rainforth2018_snr.pdf"]
    for path in paths:
        with atomic_path(path) as temporary:
            fig.savefig(temporary)
    plt.close(fig)
    return paths
