"""The package layout (README "Layout"): one direction of dependency, ssm <- nn <- models <- tasks <- (video, demo, serve)
<- cli; engine, data and metrics import nothing above them; no import cycle between modules (imports inside
functions count too). Read from the source with ``ast``, so a lazy import cannot hide a cycle."""
import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "vidmamba"
# rank of each top-level part: a module may import parts of a lower rank, or of its own part
RANKS = {"utils": 0, "config": 0, "allocator": 0, "threads": 0, "errors": -1,
         "engine": 1, "data": 1, "metrics": 1, "ssm": 1, "viz": 1,
         "nn": 2, "models": 3, "tasks": 4, "video": 5, "demo": 5, "serve": 6, "cli": 7}  # serve is built on video
BASE = {"engine", "data", "metrics"}  # below the model stack: they may use each other, never anything above
MODEL_STACK = {"ssm", "nn", "models", "tasks", "video", "demo", "serve", "cli"}


def module_name(path: Path) -> str:
    parts = ["vidmamba", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every ``vidmamba...`` module imported anywhere in the file (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("vidmamba"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            if base.startswith("vidmamba"):
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names)
    return found


MODULES = {module_name(p): p for p in SRC.rglob("*.py")}
GRAPH = {name: {m for m in imports_of(path) if m in MODULES and m != name} for name, path in MODULES.items()}


def part(module: str) -> str:
    return module.split(".")[1] if "." in module else "__init__"


def test_every_part_has_a_rank():
    assert {part(m) for m in MODULES} - {"__init__"} <= RANKS.keys()


@pytest.mark.parametrize("module", sorted(m for m in MODULES if part(m) != "__init__"))
def test_dependencies_point_down(module):
    mine = part(module)
    for target in GRAPH[module]:
        theirs = part(target)
        if theirs in ("__init__", mine):
            continue
        assert RANKS[theirs] < RANKS[mine] or (mine in BASE and theirs in BASE), f"{module} imports {target}"
        assert not (mine in BASE and theirs in MODEL_STACK), f"{module} imports {target}"


def test_no_import_cycles():
    """Package ``__init__`` modules re-export their children; an edge into one counts as edges into what it
    re-exports, so a child importing its own package's ``__init__`` is not a cycle unless a real one exists."""
    def expand(target):
        return {target} if MODULES[target].name != "__init__.py" else GRAPH[target] | {target}

    graph = {m: {t for target in deps for t in expand(target) if t != m and not m.startswith(t + ".")}
             for m, deps in GRAPH.items()}
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == "open":
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
