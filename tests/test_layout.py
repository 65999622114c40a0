"""The shape of the house: mgr's import graph has no cycle (counting the imports inside
functions too), and the layers point one way.

- features -> nets -> models -> entry points: a layer imports nothing of the layers above it.
- mgr.models and mgr.data are siblings: neither imports the other. The entry points (and
  mgr.restore, which they call) join a model to its data. What both must agree on lives below
  both: the padding chunk's label in mgr.labels; how a track's chunks are combined is the model's
  (mgr.models.aggregation, kept in its checkpoint), how a track is cut the data's
  (mgr.data.chunking). The model asks the data module for its tracks' groups by duck typing
  (`trainer.datamodule.track_groups`), with no import.
- mgr.models imports no entry point: mgr.train, eval, predict, embed, report, download, verify
  and their Hydra wrapper mgr.entry call the models, never the other way.
- mgr.utils imports nothing of mgr: it holds what any layer may use.
- `@hydra.main` appears only in the seven entry points, all at mgr's top level, and in their
  Hydra wrapper mgr.entry (which may build each one's main); they, and no other module, define the
  `main` that `python -m mgr.<command>` runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


ENTRY_POINTS = ("mgr.train", "mgr.eval", "mgr.predict", "mgr.embed", "mgr.report", "mgr.download", "mgr.verify")
# A module of the key's layer may import nothing of the layers its value names (its own layer aside).
FORBIDDEN = {
    "mgr.features": ("mgr.nets", "mgr.models"),
    "mgr.nets": ("mgr.models", "mgr.features"),
    "mgr.models": ("mgr.data", *ENTRY_POINTS, "mgr.entry"),
    "mgr.data": ("mgr.models",),
    "mgr.utils": ("mgr",),
}


def module_paths() -> dict[str, Path]:
    """mgr module name -> its file."""
    paths = {}
    for path in (SRC / "mgr").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return paths


def import_graph() -> dict[str, set[str]]:
    """mgr module -> the mgr modules it imports anywhere in its file."""
    paths = module_paths()
    graph = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                # `from pkg import submodule` imports the submodule; `from pkg import name`, pkg itself.
                deps |= {f"{base}.{a.name}" if f"{base}.{a.name}" in paths else base for a in node.names}
        graph[name] = {d for d in deps if d in paths and d != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [node, dep] if dep in path else [node, dep]
            if dep not in state and (cycle := visit(dep, path + [node])):
                return cycle
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node, [])):
            return cycle
    return None


def test_the_import_graph_has_no_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def within(module: str, layer: str) -> bool:
    return module == layer or module.startswith(layer + ".")


def layer_violations(graph: dict[str, set[str]], forbidden: dict[str, tuple[str, ...]] = FORBIDDEN) -> list[str]:
    """Each import of `graph` that crosses a rule of `forbidden`, as "module -> import"."""
    return sorted(f"{module} -> {dep}" for module, deps in graph.items() for layer, banned in forbidden.items()
                  if within(module, layer) for dep in deps
                  if not within(dep, layer) and any(within(dep, b) for b in banned))


def test_layers_point_one_way():
    assert layer_violations(import_graph()) == []


def test_the_layer_rules_catch_a_crossing():
    graph = {"mgr.models.task": {"mgr.data.datamodule", "mgr.models.heads", "mgr.labels"},
             "mgr.models.heads": {"mgr.entry"}, "mgr.utils.progress": {"mgr", "mgr.utils.allocator"},
             "mgr.data.datasets": {"mgr.models"}, "mgr.train": {"mgr.models", "mgr.data"}}
    assert layer_violations(graph) == ["mgr.data.datasets -> mgr.models", "mgr.models.heads -> mgr.entry",
                                       "mgr.models.task -> mgr.data.datamodule", "mgr.utils.progress -> mgr"]


def hydra_mains(source: str) -> list[str]:
    """The functions of `source` decorated with Hydra's main (as `hydra.main` or its imported name)."""
    tree = ast.parse(source)
    names = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
             and node.module == "hydra" for alias in node.names if alias.name == "main"}

    def is_hydra_main(decorator: ast.expr) -> bool:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        return (isinstance(target, ast.Attribute) and target.attr == "main" and isinstance(target.value, ast.Name)
                and target.value.id == "hydra") or (isinstance(target, ast.Name) and target.id in names)

    return [node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and any(is_hydra_main(d) for d in node.decorator_list)]


def test_hydra_main_is_only_in_the_seven_entry_points_and_their_wrapper():
    mains = {module for module, path in module_paths().items() if hydra_mains(path.read_text())}
    assert mains and mains <= {*ENTRY_POINTS, "mgr.entry"}, sorted(mains - {*ENTRY_POINTS, "mgr.entry"})


def test_the_hydra_main_finder_finds_every_spelling():
    assert hydra_mains("import hydra\n@hydra.main(config_name='x')\ndef a(cfg): ...\ndef b(): ...") == ["a"]
    assert hydra_mains("from hydra import main as m\n@m(config_name='x')\ndef c(cfg): ...") == ["c"]
    assert hydra_mains("@main\ndef d(cfg): ...") == []  # not Hydra's


def top_level_names(source: str) -> set[str]:
    """The names a module binds at its top level (functions, classes, assignments)."""
    names = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def test_the_seven_entry_points_and_only_they_define_a_main():
    commands = {module for module, path in module_paths().items() if "main" in top_level_names(path.read_text())}
    assert commands == set(ENTRY_POINTS)
    assert top_level_names("main = command('x', run)\ndef helper(): ...\nif True:\n    other = 1") == {"main", "helper"}
