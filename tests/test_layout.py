"""The layout holds: no import circles, each package imports only the layers under it,
no module over 600 lines, one writer of bundle directories, one explainer of engine
failures. Read from the sources (every import, at the top of a module or inside a
function), so nothing here needs a Docker engine."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("whale_core", "whale_kernel", "whale_extension", "whale_hub", "whale_site",
            "whale_lessons", "whale_progress")
GATE = ROOT / "images" / "engine" / "whale_gate"
# Which of our packages each package may import (besides itself).
ALLOWED = {
    "whale_core": set(),
    "whale_kernel": {"whale_core"},
    # The server extension readies the server for the kernels forked from it.
    "whale_extension": {"whale_core", "whale_kernel"},
    "whale_hub": {"whale_core"},
    "whale_lessons": {"whale_core", "whale_hub", "whale_site"},
    "whale_site": {"whale_core", "whale_hub", "whale_lessons", "whale_progress"},
    # The hub's progress service runs the lessons' checks (whale_lessons.check).
    "whale_progress": {"whale_core", "whale_lessons"},
}
# whale-check ships into the single-user image, where the hub is not installed: the CLI,
# the exercises' framework and every lesson's check need only whale_core.
ONLY_CORE = {"whale_lessons.check", "whale_lessons", "whale_lessons.exercises",
             "whale_lessons.checks"}


def only_core(name: str) -> bool:
    return name in ONLY_CORE or name.startswith("whale_lessons.checks.")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Our modules that `name` imports, wherever in it (resolved to known modules)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join([*up, *([base] if base else [])])
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(name, path, set(found)) for name, path in found.items()}


def test_there_are_no_import_circles(graph):
    state: dict[str, str] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycle = [*stack[stack.index(nxt):], nxt]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_each_package_imports_only_the_layers_under_it(graph):
    wrong = []
    for name, targets in graph.items():
        mine = name.split(".")[0]
        for target in targets:
            theirs = target.split(".")[0]
            if theirs != mine and theirs not in ALLOWED[mine]:
                wrong.append(f"{name} imports {target}")
            if only_core(name) and theirs not in ("whale_core", mine):
                wrong.append(f"{name} (shipped without the hub) imports {target}")
    assert not wrong, wrong


def test_no_module_is_over_600_lines():
    paths = [*modules().values(), *GATE.glob("*.py")]
    long = {str(p.relative_to(ROOT)): n for p in paths
            if (n := len(p.read_text().splitlines())) > 600}
    assert not long, long


def calls_of(function: str) -> list[str]:
    """Modules of ours that call or define `function`."""
    found = []
    for name, path in modules().items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (isinstance(node, ast.FunctionDef) and node.name == function) or (
                    isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None))
                    == function):
                found.append(name)
                break
    return found


def test_bundle_directories_have_one_writer():
    """Every module that writes a bundle's files goes through whale_core.bundle.write_bundle_dir:
    nobody else writes a key.pem."""
    writers = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value == "key.pem":
                writers.append(name)
                break
    # Modules that name key.pem: they read, check or explain it; only bundle.py writes.
    assert set(writers) <= {"whale_core.bundle", "whale_core.certs", "whale_core.archives",
                            "whale_hub.pki"}, writers
    assert "whale_core.bundle" in calls_of("write_bundle_dir")
    users = set(calls_of("write_bundle_dir"))
    assert {"whale_core.store", "whale_hub.pki", "whale_hub.providers.byoc"} <= users, users


def test_engine_failures_have_one_explainer():
    for function in ("explain_exception", "explain_engine_error", "explain_output", "limit_hint"):
        defined = [name for name, path in modules().items()
                   if f"def {function}(" in path.read_text()]
        assert defined == ["whale_core.explain"], (function, defined)
