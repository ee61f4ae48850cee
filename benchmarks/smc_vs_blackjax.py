"""SMC log Z: bw's smc against blackjax's adaptive tempered SMC, side by side, at several
budgets, on gmm25, funnel (10-d, scale 3) and manywell (32-d).

For each target and number of particles, 8 independent runs of each of

- ``bw tuned``: bw.sample(target, "smc", ...) with the sendera2024_logz figure's tuned
  settings (their ``how_found`` notes say how a user without the truth finds them);
- ``bw auto``: bw.sample(target, "smc") with default options, only the particles set;
- ``blackjax``: ``blackjax.adaptive_tempered_smc`` with MALA moves (3 per temperature,
  target ESS 0.5, systematic resampling) from a Gaussian reference N(0, s^2 I), s the
  scale of the tuned row's reference (gmm25 8, funnel 3, manywell 2). Its MALA step size
  is fixed for a run (blackjax adapts no step size in tempered SMC); it is the largest of
  ``STEP_SIZES`` whose mean acceptance over the smallest budget's runs is at least 0.5,
  a rule that needs no truth.

Times are sampling times with compilation excluded (each program runs once to compile,
then again timed: bw's ``cost["sample_s"]``); per run = total / 8, as the 8 runs are
vmapped in one program for each. Reported per cell: mean |delta log Z| over the runs and
its standard error, gradient evaluations per run and seconds per run. The summary
compares at equal wall time: for each bw row and budget, blackjax's |delta log Z|
interpolated (log-log, within the measured range) at the same seconds per run, and the
ratio blackjax/bw (goal of issue 20: at least 10).

    python benchmarks/smc_vs_blackjax.py [--quick] [--targets gmm25 ...] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time
import warnings
from typing import Any

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
from blackjax.smc import resampling

import bayeswb as bw
from bayeswb.core.verdict import UnreliableRunWarning
from bayeswb.figures import sendera2024_logz

RUNS = 8
STEP_SIZES = (0.01, 0.03, 0.1, 0.3, 1.0)
MCMC_STEPS = 3
REFERENCE_SCALE = {"gmm25": 8.0, "funnel": 3.0, "manywell": 2.0}
PARTICLES = (1024, 4096, 16384, 65536)
QUICK_PARTICLES = (256, 1024)


def blackjax_program(target: bw.Target, scale: float, particles: int, step_size: float):
    """8 runs of blackjax's adaptive tempered SMC: (log Z, temperatures, acceptance)
    per run, as one jitted function of a key."""
    dim = target.dim

    def log_reference(x: jax.Array) -> jax.Array:
        return jnp.sum(jax.scipy.stats.norm.logpdf(x, scale=scale))

    def log_likelihood(x: jax.Array) -> jax.Array:
        return target.log_density(x) - log_reference(x)

    smc = blackjax.adaptive_tempered_smc(
        log_reference,
        log_likelihood,
        blackjax.mala.build_kernel(),
        blackjax.mala.init,
        {"step_size": jnp.full((1,), step_size)},
        resampling.systematic,
        target_ess=0.5,
        num_mcmc_steps=MCMC_STEPS,
    )

    def one_run(key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        init_key, key = jax.random.split(key)
        state = smc.init(scale * jax.random.normal(init_key, (particles, dim)))

        def not_done(carry: Any) -> jax.Array:
            return carry[0].tempering_param < 1.0

        def temper(carry: Any) -> Any:
            state, key, log_z, steps, acceptance = carry
            key, step_key = jax.random.split(key)
            state, info = smc.step(step_key, state)
            accepted = jnp.mean(info.update_info.acceptance_rate)
            return (
                state,
                key,
                log_z + info.log_likelihood_increment,
                steps + 1,
                (acceptance + accepted),
            )

        zero = jnp.zeros(())
        _, _, log_z, steps, acceptance = jax.lax.while_loop(
            not_done, temper, (state, key, zero, jnp.zeros((), jnp.int32), zero)
        )
        return log_z, steps, acceptance / steps

    return jax.jit(lambda key: jax.vmap(one_run)(jax.random.split(key, RUNS)))


def run_blackjax(target: bw.Target, name: str, particles: int, step_size: float) -> dict:
    program = blackjax_program(target, REFERENCE_SCALE[name], particles, step_size)
    jax.block_until_ready(program(jax.random.key(1)))  # compiles
    start = time.perf_counter()
    log_z, steps, acceptance = jax.device_get(program(jax.random.key(0)))
    seconds = time.perf_counter() - start
    # per temperature: one gradient per particle at the MCMC init, one per MALA step
    grads = float(np.mean(steps)) * particles * (1 + MCMC_STEPS)
    return _row(name, "blackjax", particles, log_z, target, grads, seconds) | {
        "step_size": step_size,
        "acceptance": float(np.mean(acceptance)),
        "temperatures": float(np.mean(steps)),
    }


def run_bw(target: bw.Target, name: str, kind: str, particles: int) -> dict:
    options: dict[str, Any] = {}
    if kind == "tuned":
        options = dict(sendera2024_logz.SETTINGS[name]["smc"])
        if options.get("fit_reference_particles"):
            options["fit_reference_particles"] = min(options["fit_reference_particles"], particles)
    options |= {"num_chains": RUNS, "num_samples": particles}
    bw.sample(target, "smc", seed=1, **options)  # compiles
    result = bw.sample(target, "smc", seed=0, **options)
    log_z = np.asarray(result.idata.sample_stats["log_marginal_likelihood"].values).ravel()
    grads = float(result.cost["n_grad_evals"]) / RUNS
    return _row(name, f"bw {kind}", particles, log_z, target, grads, result.cost["sample_s"])


def _row(
    name: str, method: str, particles: int, log_z: Any, target: bw.Target, grads: float, s: float
) -> dict:
    errors = np.abs(np.asarray(log_z, dtype=np.float64) - target.log_z)
    return {
        "target": name,
        "method": method,
        "particles": particles,
        "abs_delta_log_z": float(np.mean(errors)),
        "se": float(np.std(errors, ddof=1) / np.sqrt(errors.size)),
        "grads_per_run": grads,
        "seconds_per_run": s / RUNS,
    }


def chosen_step_size(target: bw.Target, name: str, particles: int) -> float:
    """The largest of STEP_SIZES whose mean MALA acceptance is at least 0.5."""
    best = STEP_SIZES[0]
    for step_size in STEP_SIZES:
        program = blackjax_program(target, REFERENCE_SCALE[name], particles, step_size)
        _, _, acceptance = jax.device_get(program(jax.random.key(2)))
        if np.mean(acceptance) >= 0.5:
            best = step_size
    return best


def at_equal_time(rows: list[dict]) -> list[dict]:
    """For each bw row, blackjax's error interpolated (log-log) at the same seconds."""
    out = []
    for name in sorted({r["target"] for r in rows}):
        theirs = sorted(
            (r for r in rows if r["target"] == name and r["method"] == "blackjax"),
            key=lambda r: r["seconds_per_run"],
        )
        t = np.log([r["seconds_per_run"] for r in theirs])
        e = np.log([max(r["abs_delta_log_z"], 1e-12) for r in theirs])
        for ours in (r for r in rows if r["target"] == name and r["method"] != "blackjax"):
            seconds = np.log(ours["seconds_per_run"])
            inside = bool(t[0] <= seconds <= t[-1])
            theirs_error = float(np.exp(np.interp(seconds, t, e))) if inside else np.nan
            out.append(
                {
                    "target": name,
                    "method": ours["method"],
                    "particles": ours["particles"],
                    "seconds_per_run": ours["seconds_per_run"],
                    "bw": ours["abs_delta_log_z"],
                    "blackjax_at_same_time": theirs_error,
                    "blackjax_over_bw": theirs_error / ours["abs_delta_log_z"],
                }
            )
    return out


def plot(rows: list[dict], out_dir: pathlib.Path) -> pathlib.Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({r["target"] for r in rows})
    fig, axes = plt.subplots(2, len(names), figsize=(4 * len(names), 7), squeeze=False)
    for column, name in enumerate(names):
        for method in ("bw tuned", "bw auto", "blackjax"):
            mine = [r for r in rows if r["target"] == name and r["method"] == method]
            for row_index, x in enumerate(("seconds_per_run", "grads_per_run")):
                ax = axes[row_index, column]
                ax.errorbar(
                    [r[x] for r in mine],
                    [r["abs_delta_log_z"] for r in mine],
                    yerr=[r["se"] for r in mine],
                    marker="o",
                    label=method,
                )
                ax.set(xscale="log", yscale="log", xlabel=x.replace("_", " "))
        axes[0, column].set_title(name)
        axes[0, column].set_ylabel("|delta log Z|")
        axes[1, column].set_ylabel("|delta log Z|")
    axes[0, 0].legend()
    fig.tight_layout()
    path = out_dir / "smc_vs_blackjax.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="gmm25, 256 and 1024 particles")
    parser.add_argument("--targets", nargs="+", default=list(REFERENCE_SCALE))
    parser.add_argument("--out", default="/tmp/smc_vs_blackjax", help="folder for the results")
    args = parser.parse_args()
    warnings.simplefilter("ignore", UnreliableRunWarning)
    budgets = QUICK_PARTICLES if args.quick else PARTICLES
    names = ["gmm25"] if args.quick else args.targets
    out_dir = pathlib.Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    print(
        f"{'target':9} {'method':9} {'particles':>9} {'|dlogZ|':>9} {'se':>8} "
        f"{'grads/run':>10} {'s/run':>8}"
    )
    for name in names:
        model, parameters = sendera2024_logz.TARGETS[name]
        target = bw.models.get(model, **parameters)
        step_size = chosen_step_size(target, name, budgets[0])
        # blackjax is cheaper per particle: one more budget, 4x the largest, so that its
        # curve spans bw's times
        for particles in (*budgets, 4 * budgets[-1]):
            cells = [run_blackjax(target, name, particles, step_size)]
            if particles in budgets:
                cells += [run_bw(target, name, kind, particles) for kind in ("tuned", "auto")]
            for row in cells:
                rows.append(row)
                print(
                    f"{name:9} {row['method']:9} {particles:>9} {row['abs_delta_log_z']:>9.4f} "
                    f"{row['se']:>8.4f} {row['grads_per_run']:>10.3g} "
                    f"{row['seconds_per_run']:>8.3f}",
                    flush=True,
                )
    equal = at_equal_time(rows)
    print("\nat equal wall time per run (blackjax interpolated; nan: outside its range)")
    for row in equal:
        print(
            f"{row['target']:9} {row['method']:9} {row['particles']:>9} "
            f"s/run {row['seconds_per_run']:.3f}: bw {row['bw']:.4f}, blackjax "
            f"{row['blackjax_at_same_time']:.4f}, blackjax/bw {row['blackjax_over_bw']:.1f}"
        )
    (out_dir / "smc_vs_blackjax.json").write_text(
        json.dumps({"rows": rows, "equal_time": equal}, indent=1)
    )
    print(f"wrote {plot(rows, out_dir)}")


if __name__ == "__main__":
    main()
