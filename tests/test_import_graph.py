"""The import graph of the project's packages has no cycle, and each layer imports only the layers below it.

Every import counts, at module level or inside a function: a lazy import does not remove a cycle, it only hides it
until the call. Read with ast (nothing is imported): `import a.b`, `from a import b` (the module a.b when there is
one, else a), and relative imports. Imports through importlib with a computed name (get_backend) are not seen.

Layers, bottom up (docs/architecture.md, repository tree):
  core      numpy and the standard library (tests/test_core_independence.py imports it with the frameworks blocked)
  formats   checkpoint formats: numpy and the standard library only
  backends  on core and formats
  convert   on core, formats and backends; nothing else imports convert (bench's conversion timing measures it)
  deploy    on core, formats and backends
  bench     on everything below it but convert
  run.py    the command line, on top
A framework (torch, paddle) is imported only by the modules docs/architecture.md lists under "Where a framework is
imported".
"""
import ast
import fnmatch
import pathlib
import re
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("core", "formats", "backends", "convert", "deploy", "bench")
SCRIPTS = ("run",)
FRAMEWORKS = ("torch", "paddle")
# what each layer may import of the project, besides itself
ALLOWED = {
    "core": (),
    "formats": (),
    "backends": ("core", "formats"),
    "convert": ("core", "formats", "backends"),
    "deploy": ("core", "formats", "backends"),
    "bench": ("core", "formats", "backends", "deploy"),
    "run": ("core", "backends", "deploy"),
}
# modules outside convert/ that may import it, and why
CONVERT_IMPORTERS = {"bench.conversion": "times convert.checkpoints.convert_file"}
FRAMEWORK_TABLE = "## Where a framework is imported"


def module_name(path, root):
    rel = path.relative_to(root).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def project_files(root, packages=PACKAGES, scripts=SCRIPTS):
    """{module name: path} of every .py file of the packages and the top-level scripts."""
    files = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            files[module_name(path, root)] = path
    for script in scripts:
        if (root / f"{script}.py").is_file():
            files[script] = root / f"{script}.py"
    return files


def _resolve(name, modules):
    """The longest prefix of dotted ``name`` that is a project module, or None (a module from elsewhere)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def imports_of(name, path, modules):
    """(project edges [(module, line)], outside imports [(top-level name, line)]) of one file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    edges, outside = [], []

    def add(target, line, relative):
        found = _resolve(target, modules)
        if found is not None:
            edges.append((found, line))
        elif not relative:
            outside.append((target.split(".")[0], line))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno, False)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module
            for alias in node.names:
                submodule = f"{base}.{alias.name}" if base else alias.name
                if alias.name != "*" and submodule in modules:
                    add(submodule, node.lineno, bool(node.level))
                else:
                    add(base, node.lineno, bool(node.level))
    return edges, outside


def import_graph(root=ROOT, packages=PACKAGES, scripts=SCRIPTS):
    """({module: {imported project module: first line}}, {module: [(outside top-level name, line)]}, files)."""
    files = project_files(root, packages, scripts)
    graph, outside = {}, {}
    for name, path in files.items():
        edges, others = imports_of(name, path, files)
        graph[name] = {}
        for target, line in edges:
            if target != name:
                graph[name].setdefault(target, line)
        outside[name] = others
    return graph, outside, files


def find_cycle(graph):
    """One import cycle as [m0, m1, ..., m0], or None."""
    state = {}
    for start in sorted(graph):
        if state.get(start):
            continue
        stack, path = [(start, iter(sorted(graph[start])))], [start]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(child) == 1:
                return path[path.index(child):] + [child]
            elif not state.get(child):
                state[child] = 1
                stack.append((child, iter(sorted(graph.get(child, ())))))
                path.append(child)
    return None


def describe_cycle(cycle, graph, files, root=ROOT):
    steps = [f"{a} imports {b} ({files[a].relative_to(root)}:{graph[a][b]})" for a, b in zip(cycle, cycle[1:])]
    return "import cycle: " + "; ".join(steps)


def layer(module):
    return module.split(".")[0]


def layer_violations(graph, files, root=ROOT):
    found = []
    for module, targets in sorted(graph.items()):
        for target, line in sorted(targets.items()):
            own, other = layer(module), layer(target)
            if own == other or other in ALLOWED[own]:
                continue
            if other == "convert" and module in CONVERT_IMPORTERS:
                continue
            found.append(f"{files[module].relative_to(root)}:{line}: {module} ({own}) imports {target}; {own} may "
                         f"import {', '.join(ALLOWED[own]) or 'no other package'}")
    return found


def framework_importers(outside, files, root=ROOT):
    """{relative path: sorted frameworks it imports}."""
    found = {}
    for module, names in outside.items():
        frameworks = sorted({name for name, _ in names if name in FRAMEWORKS})
        if frameworks:
            found[files[module].relative_to(root).as_posix()] = frameworks
    return found


def documented_framework_importers(root=ROOT):
    """The path patterns in the first column of docs/architecture.md's table under FRAMEWORK_TABLE."""
    text = (root / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert FRAMEWORK_TABLE in text, f"docs/architecture.md: no section {FRAMEWORK_TABLE!r}"
    section = text.split(FRAMEWORK_TABLE, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [p for row in rows for p in re.findall(r"`([^`]+)`", row.split("|")[1])]


# ---- the tree ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tree():
    return import_graph()


def test_the_graph_sees_the_tree(tree):
    graph, outside, _ = tree
    for package in PACKAGES:
        assert package in graph, f"{package}/__init__.py not found"
    assert "run" in graph
    assert "backends.base" in graph["backends.torch.backend"]          # module-level `from a.b import x`
    assert "convert.checkpoints" in graph["convert.parity"]
    assert "deploy.predict" in graph["deploy.export"]                    # an import inside a function
    assert "formats.layout" in graph["formats.adam_state"]               # `from formats import layout`
    assert "torch" in {name for name, _ in outside["backends.torch.export"]}


def test_no_import_cycle(tree):
    graph, _, files = tree
    cycle = find_cycle(graph)
    assert cycle is None, describe_cycle(cycle, graph, files)


def test_layers_import_only_downward(tree):
    graph, _, files = tree
    assert layer_violations(graph, files) == []


def test_formats_imports_numpy_and_the_standard_library_only(tree):
    _, outside, files = tree
    found = [f"{files[m].relative_to(ROOT)}:{line}: {name}" for m, names in sorted(outside.items())
             if layer(m) == "formats" for name, line in names
             if name != "numpy" and name not in sys.stdlib_module_names]
    assert found == []


def test_nothing_outside_convert_imports_it(tree):
    graph, _, _ = tree
    importers = {m for m, targets in graph.items() if layer(m) != "convert" and any(layer(t) == "convert"
                                                                                  for t in targets)}
    assert importers <= set(CONVERT_IMPORTERS), sorted(importers - set(CONVERT_IMPORTERS))


def test_frameworks_are_imported_only_where_the_docs_say(tree):
    _, outside, files = tree
    patterns = documented_framework_importers()
    assert "backends/torch/*" in patterns and "backends/paddle/*" in patterns
    found = framework_importers(outside, files)
    assert "backends/torch/backend.py" in found and "core/engine.py" not in found
    undocumented = {path: names for path, names in found.items()
                    if not any(fnmatch.fnmatch(path, pattern) for pattern in patterns)}
    assert undocumented == {}, f"add them to docs/architecture.md {FRAMEWORK_TABLE!r}, with why"


# ---- the checks themselves, on planted trees -------------------------------------------------------------------

def _plant(root, files):
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_a_planted_cycle_is_reported(tmp_path):
    _plant(tmp_path, {
        "core/__init__.py": "",
        "core/a.py": "from core import b\n",
        "core/b.py": "def f():\n    from .c import g\n",          # relative, inside a function
        "core/c.py": "import core.a\n",
        "core/d.py": "from core.a import something\n",
    })
    graph, _, files = import_graph(tmp_path, ("core",), ())
    cycle = find_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1] and set(cycle) == {"core.a", "core.b", "core.c"}
    message = describe_cycle(cycle, graph, files, tmp_path)
    assert "core.b imports core.c (core/b.py:2)" in message


def test_an_acyclic_planted_tree_passes_and_an_upward_import_is_named(tmp_path):
    _plant(tmp_path, {
        "core/__init__.py": "",
        "core/a.py": "import numpy\n",
        "formats/__init__.py": "",
        "formats/x.py": "from ..core import a\nimport torch\n",   # relative across packages; a framework
    })
    graph, outside, files = import_graph(tmp_path, ("core", "formats"), ())
    assert find_cycle(graph) is None
    assert layer_violations(graph, files, tmp_path) == [
        "formats/x.py:1: formats.x (formats) imports core.a; formats may import no other package"]
    assert framework_importers(outside, files, tmp_path) == {"formats/x.py": ["torch"]}
