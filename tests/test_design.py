"""docs/DESIGN.md stays true: every module is named in it with its job, and the packages'
modules import each other without cycles."""
import ast
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("runtime", "imagetool", "specs", "conformance")


def _modules() -> dict[str, str]:
    """dotted name → path, for every .py of the packages."""
    out = {}
    for pkg in PACKAGES:
        for dirpath, dirnames, files in os.walk(os.path.join(REPO, pkg)):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            for f in files:
                if f.endswith(".py"):
                    path = os.path.join(dirpath, f)
                    name = os.path.relpath(path, REPO)[:-3].replace("/", ".")
                    out[name.removesuffix(".__init__")] = path
    return out


def _imports(name: str, path: str, known: set) -> set:
    tree = ast.parse(open(path).read())
    pkg = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = pkg
            for _ in range(max(node.level - 1, 0)):
                base = base.rpartition(".")[0]
            target = (base + ("." + node.module if node.module else "")) if node.level else node.module or ""
            for alias in node.names:  # `from . import x` names a module; `from .m import f` names m
                cand = f"{target}.{alias.name}"
                out.add(cand if cand in known else target)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m in known and m != name}


def test_every_module_is_named_in_the_design():
    text = open(os.path.join(REPO, "docs", "DESIGN.md")).read()
    missing = []
    for name, path in _modules().items():
        rel = os.path.relpath(path, REPO)
        base = os.path.basename(rel)
        parent = os.path.basename(os.path.dirname(rel))
        # a module is named by its file name, qualified by its directory where that is ambiguous
        if f"`{base}`" not in text and f"{parent}/{base}" not in text and f"`{parent}/{base}`" not in text:
            missing.append(rel)
    assert not missing, f"docs/DESIGN.md does not name: {missing}"


def test_no_import_cycles():
    mods = _modules()
    graph = {name: _imports(name, path, set(mods)) for name, path in mods.items()}
    cycles, state = [], {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(trail[trail.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"
    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles: " + "; ".join(" → ".join(c) for c in cycles)
