"""The ``bayeswb`` command line: list models and samplers, run one on the other, run a
benchmark sweep or regenerate a paper figure."""

from __future__ import annotations

import argparse
import ast
import json
import pathlib
import sys
import warnings
from typing import Any


def _parse_assignments(items: list[str], flag: str) -> dict[str, Any]:
    """``["dim=10", "name=x"]`` -> ``{"dim": 10, "name": "x"}`` (Python literals, else text)."""
    parsed = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise ValueError(f"{flag} expects NAME=VALUE, got {item!r}")
        try:
            parsed[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            parsed[name] = text
    return parsed


# bw.sample's arguments that `bayeswb run` sets from its own flags, not from --option
RUN_FLAGS = {
    "seed": "--seed",
    "num_chains": "--chains",
    "num_samples": "--samples",
    "num_warmup": "--warmup",
}


class _ShowDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """Help that names each option's default, where it has one worth naming."""

    def _get_help_string(self, action: argparse.Action) -> str:
        default = action.default
        if default is None or default is False or default == [] or action.help is None:
            return action.help or ""
        return super()._get_help_string(action) or ""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bayeswb", description="Bayesian inference and sampling workbench"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, formatter_class=_ShowDefaults)

    models = command("models", "list registered models, or one model's parameters")
    models.add_argument("name", nargs="?", help="a model: its parameters and ground truth")
    models.add_argument(
        "--details", action="store_true", help="table of dimensions and ground truth"
    )
    samplers = command("samplers", "list registered samplers, or one sampler's options")
    samplers.add_argument("name", nargs="?", help="a sampler: its paper and options")
    run = command("run", "sample MODEL with SAMPLER; print summary and score")
    run.add_argument("model")
    run.add_argument("sampler")
    run.add_argument("--chains", type=int, default=4, help="MCMC chains, or independent runs")
    run.add_argument(
        "--samples", type=int, default=1000, help="draws per chain, or particles per run"
    )
    run.add_argument("--warmup", type=int, default=None, help="default: the sampler's")
    run.add_argument("--seed", type=int, default=0, help="random seed")
    run.add_argument("--out", default=None, help="save the run (and its manifest) as NetCDF")
    run.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE", help="model parameter"
    )
    run.add_argument(
        "--option", action="append", default=[], metavar="NAME=VALUE", help="sampler option"
    )
    bench = command("bench", "models x samplers at an equal gradient budget")
    bench.add_argument("--models", required=True, help="comma-separated model names")
    bench.add_argument("--samplers", required=True, help="comma-separated sampler names")
    bench.add_argument("--budget", type=float, default=1e5, help="gradient evaluations per run")
    bench.add_argument("--seeds", type=int, default=3, help="runs per pair (seeds 0..N-1)")
    bench.add_argument("--chains", type=int, default=4, help="chains or runs per sampler run")
    bench.add_argument("--out", default="bench_out", help="folder for CSV, Markdown, plots")
    figure = command("figure", "regenerate a paper figure (see --list)")
    figure.add_argument("name", nargs="?", help="figure name (bayeswb figure --list)")
    figure.add_argument("--list", action="store_true", help="list the figures and exit")
    figure.add_argument("--quick", action="store_true", help="small run (what CI runs)")
    figure.add_argument("--seed", type=int, default=0, help="random seed")
    figure.add_argument("--out", default=None, help="output folder (default: figures_out/NAME)")
    return parser


def _model_details() -> None:
    """The README's model table, from the data file ``python -m bayeswb.docs_tables``
    writes beside the models (no model is built)."""
    import importlib.util

    spec = importlib.util.find_spec("bayeswb.models")
    assert spec is not None and spec.submodule_search_locations
    path = pathlib.Path(spec.submodule_search_locations[0]) / "data" / "details.json"
    rows = [{k: _cell(v) for k, v in row.items()} for row in json.loads(path.read_text())]
    widths = {k: max(len(k), *(len(row[k]) for row in rows)) for k in rows[0]}
    print("  ".join(k.ljust(w) for k, w in widths.items()).rstrip())
    for row in rows:
        print("  ".join(row[k].ljust(w) for k, w in widths.items()).rstrip())
    print("\nsources: bayeswb models NAME")


def _cell(text: str, width: int = 36) -> str:
    text = text.replace("`", "")
    return text if len(text) <= width else text[: width - 3] + "..."


def _one_sampler(name: str) -> None:
    """A sampler's method, paper, family and every option with its default and doc."""
    import dataclasses

    import bayeswb as bw
    from bayeswb.docs_tables import method, paper

    spec = bw.samplers.get(name)
    print(f"{name} ({spec.family}): {method(spec.run.__doc__)}")
    print(f"paper: {paper(spec.run)}\noptions (bayeswb run ... --option NAME=VALUE):")
    for field in dataclasses.fields(spec.config_cls):
        default = field.default if field.default is not dataclasses.MISSING else "(required)"
        doc = field.metadata.get("doc", "")
        print(f"  {field.name} = {default!r}" + (f"  -- {doc}" if doc else ""))


def _one_model(name: str) -> None:
    """A model's description, parameters with defaults, and (built with them) its ground
    truth."""
    import inspect

    import bayeswb as bw
    from bayeswb.core.registry import MODELS

    doc = inspect.getdoc(MODELS.get(name)) or ""
    print(f"{name}: {doc.split(chr(10) + chr(10))[0]}")
    print("parameters (bayeswb run ... --param NAME=VALUE):")
    for param, default in bw.models.parameters(name).items():
        shown = "(required)" if default is inspect.Parameter.empty else repr(default)
        print(f"  {param} = {shown}")
    print(bw.models.get(name).describe())


def _bench(args: argparse.Namespace) -> None:
    from bayeswb.bench import bench, write_report

    frame = bench(
        args.models.split(","),
        args.samplers.split(","),
        budget=args.budget,
        seeds=range(args.seeds),
        num_chains=args.chains,
    )
    for path in write_report(frame, args.out):
        print(f"wrote {path}")
    print((pathlib.Path(args.out) / "bench.md").read_text())


def _figure_list() -> None:
    from bayeswb import figures

    for name in figures.names():
        module = figures.get(name)
        print(f"{name}: {module.TITLE} (full run: {module.FULL_RUNTIME})\n    {module.PAPER}")
    broken = figures.broken()
    if broken:
        print("\nnot runnable:")
        for name, reason in broken.items():
            print(f"  {name}: {reason}")


def _figure(args: argparse.Namespace) -> None:
    import pandas as pd

    from bayeswb import figures

    if args.list:
        _figure_list()
        return
    if not args.name:
        raise ValueError("figure needs a NAME, or --list to see them")
    out = pathlib.Path(args.out or pathlib.Path("figures_out") / args.name)
    tables = figures.run(args.name, out, quick=args.quick, seed=args.seed)
    with pd.option_context("display.width", 120, "display.max_rows", 40):
        shown = "published" if "published" in tables else "results"
        print(f"{shown}:\n{tables[shown].to_string(index=False)}\n")
    manifest = json.loads((out / "manifest.json").read_text())
    for name in [*manifest["files"], "manifest.json"]:
        print(f"wrote {out / name}")
    print(f"elapsed {manifest['elapsed_s']:.1f}s")


def _run(args: argparse.Namespace) -> None:
    import pandas as pd

    import bayeswb as bw
    from bayeswb.core.files import writable_file
    from bayeswb.core.verdict import UnreliableRunWarning

    out = writable_file(args.out, "--out") if args.out else None  # refused before the run
    target = bw.models.get(args.model, **_parse_assignments(args.param, "--param"))
    options = _parse_assignments(args.option, "--option")
    for name, flag in RUN_FLAGS.items():
        if name in options:
            raise ValueError(f"--option {name}=...: give it as {flag} instead")
    with warnings.catch_warnings():
        # the verdict is printed below the summary instead
        warnings.simplefilter("ignore", UnreliableRunWarning)
        result = bw.sample(
            target,
            args.sampler,
            seed=args.seed,
            num_chains=args.chains,
            num_samples=args.samples,
            num_warmup=args.warmup,
            **options,
        )
    with pd.option_context("display.width", 120, "display.max_rows", 60):
        print(f"{result!r}\n")
        print(bw.summary(result).to_string())
    cost = result.cost
    print(
        f"\ncost: {cost['n_grad_evals']} gradient evaluations, "
        f"{cost['n_logdensity_evals']} log-density evaluations, "
        f"compile {cost['compile_s']:.2f}s, sampling {cost['sample_s']:.2f}s"
    )
    if result.log_z is not None:
        se = "" if result.log_z_se is None else f" +- {result.log_z_se:.4g}"
        print(f"log Z: {result.log_z:.6g}{se}")
    print(f"\n{result.diagnostics}")
    scores = bw.score(result, target)
    scores.pop("verdict")
    if scores:
        print("\nscore against ground truth:")
        for name, value in scores.items():
            print(f"  {name:28s} {value:.4g}")
    else:
        print("\nscore: this target carries no ground truth")
    if out:
        result.save(out)
        print(f"\nsaved to {args.out}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``bayeswb``; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "models":
            import bayeswb as bw

            if args.name:
                _one_model(args.name)
            elif args.details:
                _model_details()
            else:
                print("\n".join(bw.models.names()))
        elif args.command == "samplers":
            import bayeswb as bw

            if args.name:
                _one_sampler(args.name)
            else:
                print("\n".join(bw.samplers.names()))
        elif args.command == "run":
            _run(args)
        elif args.command == "bench":
            _bench(args)
        elif args.command == "figure":
            _figure(args)
    except (KeyError, ValueError) as error:
        message = error.args[0] if error.args else repr(error)
        print(f"bayeswb: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
