"""Guard rails that keep the package untangled: imports follow the layer order, no import cycles,
no file over 400 lines, no function over 60 lines. Read from the source with `ast` (no import runs)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "honed"

# Bottom to top. A module may import its own layer and the layers below it, never a layer above;
# siblings in one layer may import each other as long as no cycle forms (checked separately).
LAYERS: list[tuple[str, ...]] = [
    ("errors", "registry", "progress", "rundir", "idx", "assets", "mosaics", "presets", "metrics", "proposals"),
    ("recipe",),
    ("data", "models", "losses", "multilabel_losses"),
    ("train", "techniques"),
    ("inference",),
    ("evaluate",),
    ("fit",),
    ("cv", "estimator", "audit", "ensemble", "tune", "prune", "pretrain", "climb", "export"),
    ("cli",),
    ("honed",),  # the package's own __init__: the public API
]
LAYER_OF = {unit: i for i, units in enumerate(LAYERS) for unit in units}
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit(module: str) -> str:
    """The layer unit of a module: its first package under honed (`honed.train.loop` -> `train`)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "honed"


def sources() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


# The only modules allowed to import honed modules by name (importlib): the plugin loaders that import
# every module of their own package, so a new technique or model kind is one file, and the top-level
# package's lazy public API (it sits above every layer).
DYNAMIC = {
    "honed.techniques": "every technique module",
    "honed.models.kinds": "the model-kind modules",
    "honed": "the lazy public API",
}


def imports(source: str, module: str, known: set[str], is_package: bool = False) -> set[str]:
    """Every honed module that `source` (the text of `module`) imports, at module level or inside a
    function; relative imports are resolved against `module`; a dynamic import of a honed module
    (importlib.import_module / __import__) outside the allowed plugin loaders is reported as `<dynamic>`."""
    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "honed"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # `from . import x` / `from ..fit import fit`
                parent = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            if base.split(".")[0] != "honed":
                continue
            for alias in node.names:  # `from honed.x import y` imports the module honed.x.y when it exists
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
        elif isinstance(node, ast.Call) and _dynamic_import(node) and module not in DYNAMIC:
            found.add("<dynamic>")
    return found


def _dynamic_import(node: ast.Call) -> bool:
    """`importlib.import_module("honed...")`, `import_module(f"honed...")` or `__import__("honed...")`."""
    name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
    if name not in ("import_module", "__import__") or not node.args:
        return False
    first = node.args[0]
    text = first.value if isinstance(first, ast.Constant) else ast.unparse(first)
    return isinstance(text, str) and "honed" in text


def graph() -> dict[str, set[str]]:
    table = sources()
    known = set(table)
    return {
        name: {
            m for m in imports(path.read_text(encoding="utf-8"), name, known, path.name == "__init__.py") if m != name
        }
        for name, path in table.items()
    }


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_dynamic_imports_outside_the_plugin_loaders() -> None:
    hidden = sorted(name for name, targets in graph().items() if "<dynamic>" in targets)
    assert not hidden, f"import honed modules statically (or add a plugin loader to DYNAMIC): {hidden}"


def test_the_scanner_sees_relative_lazy_and_dynamic_imports() -> None:
    """The scanner the layer checks rely on, on made-up source: each kind of import it must not miss."""
    known = {"honed.fit", "honed.train.loop", "honed.train", "honed.cli", "honed.cli.train"}
    source = (
        "from ..fit import fit\nfrom . import loop\nimport honed.cli\n"
        "def f():\n    from honed.cli import train\n    importlib.import_module('honed.fit')\n"
    )
    assert imports(source, "honed.train.events", known) == {
        "honed.fit",
        "honed.train.loop",
        "honed.cli",
        "honed.cli.train",
        "<dynamic>",
    }
    assert imports("from . import loop\n", "honed.train", known, is_package=True) == {"honed.train.loop"}


def test_every_unit_has_a_layer() -> None:
    missing = sorted({unit(m) for m in sources()} - set(LAYER_OF))
    assert not missing, f"give these a layer in tests/test_layers.py: {missing}"


def test_imports_follow_the_layer_order() -> None:
    wrong = [
        f"{a} -> {b}"
        for a, targets in graph().items()
        for b in sorted(targets - {"<dynamic>"})
        if LAYER_OF[unit(b)] > LAYER_OF[unit(a)]
    ]
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


def test_no_import_cycles_between_modules() -> None:
    assert not cycles({name: targets - {"<dynamic>"} for name, targets in graph().items()})


def test_no_import_cycles_between_packages() -> None:
    units: dict[str, set[str]] = defaultdict(set)
    for a, targets in graph().items():
        units[unit(a)] |= {unit(b) for b in targets - {"<dynamic>"} if unit(b) != unit(a)}
    assert not cycles(units)


def test_the_checker_sees_a_cycle_and_a_wrong_import() -> None:
    """The checks above can fail: a made-up graph with a cycle and an upward import."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert LAYER_OF[unit("honed.cli")] > LAYER_OF[unit("honed.train.loop")]


def test_files_and_functions_stay_small() -> None:
    long_files, long_functions = [], []
    for name, path in sources().items():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > MAX_FILE_LINES:
            long_files.append(f"{name}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if length > MAX_FUNCTION_LINES:
                    long_functions.append(f"{name}.{node.name}: {length} lines")
    assert not long_files, long_files
    assert not long_functions, long_functions
