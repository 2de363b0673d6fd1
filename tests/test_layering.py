"""The package's layering, checked from the source: no import cycles, and no import that runs back up.

Layers, lowest first (a module may import its own layer and the ones below, never one above):

0. ``errors``, ``home``, ``files``, the package itself;
1. ``plugin`` (the contract), ``layers`` (the building blocks);
2. the built-in plugins (``encoders``, ``pooling``, ``heads``) and ``normalize``;
3. ``registry``, ``model``, ``presets``, ``plugin_info``, ``data``, ``testing``, ``exporting``;
4. the training loop (``train.config``, ``train.device``, ``train.loop``);
5. a run and its files: ``train.fit``, ``model_folder``, ``ensemble``, ``score``, ``inference``, ``verification``;
6. ``engine`` (the search engine), ``report``;
7. ``api`` (the Python API);
8. ``cli``, then ``__main__``.

The one exception: the package's ``__init__`` hands out the API's names lazily (PEP 562 ``__getattr__``), so
``automel.search(...)`` works while ``import automel`` (which every module does) stays on the ground floor.

Imports under ``if TYPE_CHECKING:`` are for annotations only and do not count. Imports inside functions
count for the direction (a lazy import that runs back up is still a dependency that runs back up) and, since
issue 23, for cycles too: two modules that need each other share a third, lower one instead.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "automel"
LAYERS: list[tuple[str, int]] = [
    ("errors", 0), ("home", 0), ("files", 0), ("_version", 0), ("plugin", 1), ("layers", 1),
    ("encoders", 2), ("pooling", 2), ("heads", 2), ("normalize", 2),
    ("registry", 3), ("model", 3), ("presets", 3), ("plugin_info", 3), ("data", 3), ("testing", 3),
    ("exporting", 3),
    ("train.fit", 5), ("train", 4), ("ensemble", 5), ("score", 5), ("inference", 5),
    ("verification", 5), ("adapt", 5), ("model_folder", 5),
    ("report", 6),
    ("engine", 6), ("api", 7), ("cli", 8), ("__main__", 9),
    ("arguments", 0), ("model_config", 3), ("long_inputs", 3),  # issue 22: API checks, config schema, windows
    # issue 22: JSON limits, masking, seeds, /tmp, the output-path rule
    ("userjson", 0), ("redact", 0), ("seeds", 0), ("scratch", 0), ("outputs", 0),
    ("submission", 0),  # issue 23: the Id,Category rows, out of the run-folder module
]


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("automel", *path.relative_to(PACKAGE).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _layer(module: str) -> int:
    if module == "automel":
        return 0
    name = module.removeprefix("automel.")
    for prefix, layer in LAYERS:
        if name == prefix or name.startswith(prefix + "."):
            return layer
    raise AssertionError(f"{module} has no layer: add it to LAYERS in {__file__}")


def _imports(path: Path, top_level_only: bool) -> set[str]:
    """The automel modules ``path`` imports at run time (``from a import b`` counts ``a`` and ``a.b``)."""
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif not top_level_only or isinstance(node, ast.If | ast.Try | ast.With):
                for field in ("body", "orelse", "finalbody", "handlers"):
                    children = getattr(node, field, None)
                    if isinstance(children, list):
                        visit([c for c in children if isinstance(c, ast.stmt)]
                              + [s for h in children if isinstance(h, ast.ExceptHandler) for s in h.body])

    visit(ast.parse(path.read_text()).body)
    return {name for name in found if name in MODULES}


@pytest.mark.parametrize("top_level_only", [True, False], ids=["module-level", "function-level-too"])
def test_no_import_cycles(top_level_only: bool) -> None:
    # A package importing its own submodules (``from automel.cli import data``) is no cycle. Deferred
    # (function-level) imports count too (issue 23): a lazy import that closes a circle is still a circle
    # a reader has to untangle. The one exception is the package's lazy façade (see the docstring).
    graph = {module: _imports(path, top_level_only=top_level_only) - {module} for module, path in MODULES.items()}
    graph["automel"] -= {"automel.api"}
    visiting, done, cycles = [], set(), []

    def walk(module: str) -> None:
        visiting.append(module)
        for target in sorted(graph[module]):
            if target in visiting:
                cycles.append(" -> ".join([*visiting[visiting.index(target):], target]))
            elif target not in done:
                walk(target)
        visiting.pop()
        done.add(module)

    for module in sorted(graph):
        if module not in done:
            walk(module)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_import_runs_back_up(module: str) -> None:
    allowed = {"automel.api"} if module == "automel" else set()  # the lazy façade (see the docstring)
    upward = [f"{target} (layer {_layer(target)})" for target in sorted(_imports(MODULES[module], top_level_only=False))
              if _layer(target) > _layer(module) and target not in allowed]
    assert not upward, f"{module} (layer {_layer(module)}) imports from a higher layer: {', '.join(upward)}"
