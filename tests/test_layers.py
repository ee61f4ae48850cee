"""The layers of the package: no import circle, and each layer imports only those below it.

core <- execution <- (samplers, models) <- applications (cli, bench, docs_tables, figures)
<- the public API (bayeswb/__init__.py). Imports inside functions count too: a circle
hidden in a function is still a circle.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
FOLDERS = {"bayeswb": "bayeswb", "samplers": "bayeswb.samplers", "models": "bayeswb.models"}

# what each layer may import from bayeswb (prefixes); the public API may import anything
ALLOWED = {
    "bayeswb.core": ("bayeswb.core",),
    "bayeswb.execution": ("bayeswb.core", "bayeswb.execution"),
    "bayeswb.samplers": (
        "bayeswb.core",
        "bayeswb.execution.driver",
        "bayeswb.execution.kernel",
        "bayeswb.samplers",
    ),
    "bayeswb.models": ("bayeswb.core", "bayeswb.models"),
}


def _module_name(path: pathlib.Path) -> str:
    relative = path.relative_to(ROOT)
    parts = [FOLDERS[relative.parts[0]], *relative.parts[1:]]
    parts[-1] = parts[-1].removesuffix(".py")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports() -> dict[str, set[str]]:
    graph = {}
    for folder in FOLDERS:
        for path in (ROOT / folder).rglob("*.py"):
            module = _module_name(path)
            package = module if path.name == "__init__.py" else module.rpartition(".")[0]
            found = set()
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    found |= {alias.name for alias in node.names}
                elif isinstance(node, ast.ImportFrom):
                    base = node.module or ""
                    if node.level:
                        base = ".".join(
                            package.split(".")[: len(package.split(".")) - node.level + 1]
                        )
                        base = f"{base}.{node.module}" if node.module else base
                    found.add(base)
                    found |= {f"{base}.{alias.name}" for alias in node.names}
            graph[module] = {name for name in found if name.startswith("bayeswb")}
    # keep only names that are modules of the package
    return {m: {n for n in names if n in graph and n != m} for m, names in graph.items()}


GRAPH = _imports()


def test_no_import_circle():
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = "open"
        path.append(module)
        for imported in sorted(GRAPH[module]):
            # a package's __init__ importing its own modules is how families register
            if module == imported.rpartition(".")[0] and imported.startswith(module + "."):
                continue
            if state.get(imported) == "open":
                circle = path[path.index(imported) :] + [imported]
                pytest.fail("import circle: " + " -> ".join(circle))
            if imported not in state:
                visit(imported)
        path.pop()
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_layer_imports_only_the_layers_below(layer):
    wrong = {
        (module, imported)
        for module, names in GRAPH.items()
        if module == layer or module.startswith(layer + ".")
        for imported in names
        if not imported.startswith(ALLOWED[layer])
    }
    assert not wrong, sorted(wrong)


def test_the_public_names_are_the_lazy_ones():
    import bayeswb

    assert sorted(bayeswb.__all__) == sorted([*bayeswb._PUBLIC, *bayeswb._SUBPACKAGES])
    for name in bayeswb.__all__:
        assert getattr(bayeswb, name) is not None, name
