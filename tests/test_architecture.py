"""The seams docs/architecture.md promises, checked on the source tree itself:

- kcomp's module import graph (every import, function-level ones included; those under
  `if TYPE_CHECKING:` excluded) has no cycle;
- function-level imports remain only for optional heavy dependencies (torch, tvm, matplotlib, scipy);
- nothing outside targets/ tests a target family by name: the pipeline, the search, the bench, the
  fuzzer and the CLI ask the target (`capabilities`, `family`, its methods);
- modules stay under 600 lines.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"kcomp": ROOT / "kcomp", "kcomp.passes": ROOT / "passes", "kcomp.targets": ROOT / "targets"}
PACKAGES["kcomp.search"] = ROOT / "search"
HEAVY = {"torch", "tvm", "matplotlib", "scipy"}  # optional or slow to import: imported where used


def modules() -> dict[str, Path]:
    """Every kcomp module by its import name."""
    out = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join([package, *parts])] = path
    return out


def imports(path: Path, name: str) -> list[tuple[str, bool]]:
    """(imported module, at function level) for every import of the file, TYPE_CHECKING ones excluded."""
    tree = ast.parse(path.read_text())
    hidden = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    top = {id(n) for n in tree.body}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if isinstance(node, ast.Import):
            out += [(a.name, id(node) not in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{up}.{base}" if base else up
            out += [(f"{base}.{a.name}", id(node) not in top) for a in node.names]
    return out


def graph() -> tuple[nx.DiGraph, list[str]]:
    """The import graph between kcomp modules (`from kcomp.x import y` is an edge to kcomp.x.y when
    that is a module, else to kcomp.x) and every function-level import of any module."""
    known = modules()
    g = nx.DiGraph()
    local = []
    for name, path in known.items():
        g.add_node(name)
        for target, nested in imports(path, name):
            if nested:
                local.append(f"{name}: {target}")
            if target.split(".")[0] != "kcomp":
                continue
            while target not in known:
                target = target.rpartition(".")[0]
            if target != name:
                g.add_edge(name, target)
    return g, local


def test_the_import_graph_has_no_cycle():
    g, _ = graph()
    assert len(g) > 100 and g.number_of_edges() > 400  # the walk found the code
    assert g.has_edge("kcomp.pipeline", "kcomp.targets.base")
    cycles = [sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1]
    assert cycles == [], cycles


def test_function_level_imports_are_for_heavy_optional_dependencies_only():
    _, local = graph()
    assert [line for line in local if line.split(": ")[1].split(".")[0] not in HEAVY] == []


def test_the_graph_sees_a_cycle_and_a_local_import(tmp_path, monkeypatch):
    """The checks above can fail: a tiny package with a function-level import closing a cycle."""
    (tmp_path / "kcomp").mkdir()
    (tmp_path / "kcomp" / "a.py").write_text("from kcomp.b import f\n")
    (tmp_path / "kcomp" / "b.py").write_text("def f():\n    from kcomp.a import g\n")
    monkeypatch.setitem(PACKAGES, "kcomp", tmp_path / "kcomp")
    for package in ("kcomp.passes", "kcomp.targets", "kcomp.search"):
        monkeypatch.delitem(PACKAGES, package)
    g, local = graph()
    assert local == ["kcomp.b: kcomp.a.g"]
    assert [sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1] == [["kcomp.a", "kcomp.b"]]


FAMILY_TEST = re.compile(
    r"""[=!]=\s*["'](accel|cpu|cuda)\b"""  # x == "accel"
    r"""|["'](accel|cpu|cuda)["']\s*[=!]="""  # "accel" == x
    r"""|\bin\s*[(\[{]\s*["'](accel|cpu|cuda)["']"""  # x in ("cpu", ...)
    r"""|startswith\(\s*["'](accel|cpu|cuda)"""  # x.startswith("accel")
    r"""|\.(split|partition)\(\s*["']:["']\s*\)\s*\[0\]"""  # spec.split(":")[0]: a family by hand
)


def family_tests(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if FAMILY_TEST.search(line)]


def test_no_target_family_tests_outside_targets():
    found = []
    for name, path in modules().items():
        if not name.startswith("kcomp.targets."):
            found += [f"{path.relative_to(ROOT)}: {line}" for line in family_tests(path.read_text())]
    assert found == []


@pytest.mark.parametrize(
    "line",
    [
        'if spec.split(":")[0] == "accel":',
        'accel = target.name.partition(":")[0]',
        'if "cpu" != family:',
        'if family in ("cpu", "accel"):',
        'if spec.startswith("accel"):',
    ],
)
def test_the_family_grep_catches(line):
    assert family_tests(line)


def test_modules_stay_under_600_lines():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > 600}
    assert long == {}
