"""The package's shape: no import cycle between its modules, and one reader of the
environment (config). Both were true by convention only and broke twice."""

from __future__ import annotations

import ast
from pathlib import Path

import tsj_lab

PACKAGE = Path(tsj_lab.__file__).parent


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The package modules ``path`` imports, at any depth of its code (a function-body
    import closes a cycle as surely as a top-level one, only later)."""
    here = _module(path).split(".")
    if path.name != "__init__.py":
        here = here[:-1]
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = here[:len(here) - node.level + 1] + (node.module.split(".") if node.module else [])
            for alias in node.names:
                full = ".".join([*base, alias.name])
                found.add(full if _exists(full) else ".".join(base))
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("tsj_lab.")}
    return {m for m in found if _exists(m)}


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node but those under ``if TYPE_CHECKING:`` (imports for annotations only,
    which never run and so close no cycle)."""
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        if (isinstance(node, ast.If) and isinstance(node.test, ast.Name)
                and node.test.id == "TYPE_CHECKING"):
            todo.extend(node.orelse)
            continue
        out.append(node)
        todo.extend(ast.iter_child_nodes(node))
    return out


def _exists(module: str) -> bool:
    rel = Path(*module.split(".")[1:]) if "." in module else Path()
    return (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file()


def _graph() -> dict[str, set[str]]:
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        name = _module(path)
        graph[name] = {m for m in _imports(path) if m != name and m != "tsj_lab"}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_import_graph_sees_the_package() -> None:
    graph = _graph()
    assert len(graph) > 30 and "tsj_lab.db.connections" in graph["tsj_lab.cli"]
    assert {"tsj_lab.server.cluster", "tsj_lab.server.pooler"} <= graph["tsj_lab.db.connections"]


def test_no_import_cycle_between_modules() -> None:
    assert _cycle(_graph()) is None


def test_a_cycle_is_found_when_there_is_one() -> None:
    graph = _graph()
    # the server asking the connections layer, which starts the server (issue 13 broke it)
    graph["tsj_lab.server.cluster"] = graph["tsj_lab.server.cluster"] | {"tsj_lab.db.connections"}
    found = _cycle(graph)
    assert found and found[0] == found[-1]
    assert set(found) == {"tsj_lab.db.connections", "tsj_lab.server.cluster"}


def test_config_is_the_only_reader_of_the_environment() -> None:
    readers = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv")
                    and isinstance(node.value, ast.Name) and node.value.id == "os"):
                readers.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert readers and all(r.startswith("config.py:") for r in readers), readers
    # nor does a library module load the settings (which reads the environment): the CLI
    # and the notebooks' first cells do, and the kernel extension, which is a notebook's
    # first cell for %%sql; everything below them is handed Settings or Endpoints
    loaders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr == "load"
                    and isinstance(node.value, ast.Name) and node.value.id == "Settings"):
                loaders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert loaders and all(r.startswith(("cli/", "config.py:", "lab/ipython.py:"))
                           for r in loaders), loaders


#: the layers, lowest first (docs/architecture.md): a module imports its own layer's
#: modules and lower layers' only. The top-level modules are the vocabulary.
LAYERS = ("", "server", "db", "provision", "data", "checks", "migrate", "lab", "bench", "cli")


def _layer(module: str) -> int:
    parts = module.split(".")[1:]
    name = parts[0] if parts and (PACKAGE / parts[0]).is_dir() else ""
    return LAYERS.index(name)


def _upward(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} -> {d}" for m, deps in graph.items() for d in deps
                  if _layer(d) > _layer(m))


def test_every_module_lives_in_a_layer_folder() -> None:
    graph = _graph()
    assert {m.split(".")[1] for m in graph if m.count(".") >= 2} == set(LAYERS) - {""}
    flat = sorted(m for m in graph if m.count(".") == 1 and not (PACKAGE / m.split(".")[1]).is_dir())
    assert flat == ["tsj_lab.config", "tsj_lab.domain", "tsj_lab.errors", "tsj_lab.parallel",
                    "tsj_lab.queries", "tsj_lab.stats"], flat


def test_layers_import_only_downward() -> None:
    assert _upward(_graph()) == []


def test_an_upward_import_is_found() -> None:
    graph = _graph()
    graph["tsj_lab.db"] = graph["tsj_lab.db"] | {"tsj_lab.lab.plots"}
    assert _upward(graph) == ["tsj_lab.db -> tsj_lab.lab.plots"]
