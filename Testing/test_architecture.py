"""The backend's floors, read from the source: no import circle, no import from a lower floor up
to a higher one, the Slicer side and the web app only through `DiffusionSegLib.api` (which
loads no torch), the `testing` leaf only in the demo and the tests. docs/architecture.md draws
the same floors; `FLOORS` below is the one list both follow."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "DiffusionSegLib"

# Bottom to top. A module may import its own package and any package on its floor or below;
# packages that share a floor do not import each other.
FLOORS = (
    ("contract",),
    ("io",),
    ("imaging",),
    ("decision",),
    ("runtime",),
    ("diffusion",),
    ("models",),
    ("training",),
    ("methods",),
    ("volume",),
    ("jobs",),
    ("batch", "serve"),
    ("tools",),
    ("testing",),
    ("cli",),
)
ROOT_MODULES_ON_TOP = ("api", "worker_entry", "__main__")
TESTING_USERS = ("cli.commands.demo",)
MAX_ROOT_MODULES = 12
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(name: str, is_package: bool, node: ast.ImportFrom) -> str | None:
    if node.level:
        base = name.split(".") if name else []
        if not is_package:
            base = base[:-1]
        base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
        return ".".join(base + ([node.module] if node.module else []))
    if node.module == "DiffusionSegLib":
        return ""
    if node.module and node.module.startswith("DiffusionSegLib."):
        return node.module[len("DiffusionSegLib."):]
    return None


def import_graph() -> dict[str, set[str]]:
    """module → the package modules it imports anywhere (top level, in functions, for typing)."""
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        targets: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = _resolve(name, path.name == "__init__.py", node)
                if target is None:
                    continue
                for alias in node.names:
                    full = f"{target}.{alias.name}" if target else alias.name
                    targets.add(full if full in files else target)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("DiffusionSegLib."):
                        targets.add(alias.name[len("DiffusionSegLib."):])
        graph[name] = {t for t in targets if t != name}
    return graph


def floor_of(module: str) -> int:
    top = module.split(".")[0]
    if module == "":
        return -1   # the package itself: its __init__ holds only the version
    if module in ROOT_MODULES_ON_TOP:
        return len(FLOORS)
    for level, packages in enumerate(FLOORS):
        if top in packages:
            return level
    raise AssertionError(f"{module} is in no floor: add its package to FLOORS and docs/architecture.md")


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_no_import_circle():
    assert cycles(import_graph()) == []


def test_no_import_from_a_lower_floor_up():
    upward = []
    for module, targets in import_graph().items():
        for target in targets:
            same_package = module.split(".")[0] == target.split(".")[0]
            if not same_package and floor_of(target) > floor_of(module):
                upward.append(f"{module} → {target}")
            elif not same_package and floor_of(target) == floor_of(module) and target and module:
                upward.append(f"{module} → {target} (same floor)")
    assert upward == []


def test_the_testing_leaf_is_used_by_the_demo_only():
    users = sorted(m for m, targets in import_graph().items()
                   if any(t.split(".")[0] == "testing" for t in targets) and not m.startswith("testing"))
    assert users == sorted(TESTING_USERS)


def test_the_root_holds_few_modules_and_no_file_is_long():
    root = [p.name for p in PACKAGE.glob("*.py")]
    assert len(root) <= MAX_ROOT_MODULES, root
    long = [f"{p.relative_to(REPO)} ({n})" for p in REPO.rglob("*.py") if ".venv" not in p.parts
            and (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES]
    assert long == []


@pytest.mark.parametrize("front", ["DiffusionSeg", "DiffusionSegWeb"])
def test_the_slicer_side_and_the_web_app_use_the_public_api_only(front):
    bad = []
    for path in (REPO / front).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                if name.startswith("DiffusionSegLib.") and name != "DiffusionSegLib.api":
                    bad.append(f"{path.relative_to(REPO)}: {name}")
    assert bad == []


def test_the_public_api_loads_no_model_library():
    code = ("import sys, DiffusionSegLib.api as api; names = [n for n in api.__all__ if getattr(api, n) is None]; "
            "heavy = sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules); "
            "print(heavy, names)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[] []"


def test_docs_architecture_names_modules_that_exist():
    """Every `file.py` and `package/` the design of record names in a table row or a step exists."""
    import re

    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing, named = [], 0
    for line in text.splitlines():
        package = re.match(r"\| \d+ \| (`[a-z_]+/`(?:, `[a-z_]+/`)*) \| (.*) \|", line)
        if package:
            folders = re.findall(r"`([a-z_]+)/`", package.group(1))
            for folder in folders:
                named += 1
                if not (PACKAGE / folder).is_dir():
                    missing.append(folder + "/")
            for name in re.findall(r"`([a-z_/]+\.py)`", package.group(2)):
                named += 1
                if not any((PACKAGE / folder / name).is_file() for folder in folders) \
                        and not any(PACKAGE.rglob(name)):
                    missing.append(name)
        for path in re.findall(r"`((?:[a-z_]+/)+[a-z_]+\.py)`", line):
            named += 1
            if not (PACKAGE / path).is_file() and not any((PACKAGE / "methods").glob(path.replace("<name>", "*"))):
                missing.append(path)
    assert named > 40 and missing == []
