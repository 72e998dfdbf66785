"""Modules import downward only: import-linter checks the contracts in pyproject.toml ([tool.importlinter]), and
a broken one fails here with its import chain. Function-level imports count (import-linter's graph has them, and
the display-method exception is checked here by reading each module's imports), so does the line limit."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_import_contracts_hold():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert lint, "import-linter is a test dependency: pip install -e '.[test]'"
    result = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-1000:]
    assert "0 broken" in result.stdout


PACKAGE = ROOT / "erd_preflight"
FACES = ("notebook", "cli")
DISPLAY_METHODS = re.compile(r"^(_repr_html_|\w+_styler|\w+_frame|plot_\w+|summary)$")
VIEWS = ("erd_preflight.notebook.display", "erd_preflight.report.frames")  # the view layer
MAX_LINES = 600


def _imports(path: Path) -> list[tuple[list[str], str, list[str]]]:
    """Each relative import of a module: the functions and classes it sits in, the module it names (absolute), and
    the names it takes. Function-level imports count: Python runs them."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    package = parts[:-1]
    found: list[tuple[list[str], str, list[str]]] = []

    def visit(node: ast.AST, within: list[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue  # for type hints only: nothing runs it
            inside = within + [child.name] if isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) else within
            if isinstance(child, ast.ImportFrom) and child.level:
                base = package[:len(package) - (child.level - 1)]
                found.append((inside, ".".join(base + ([child.module] if child.module else [])),
                              [alias.name for alias in child.names]))
            visit(child, inside)

    visit(ast.parse(path.read_text(encoding="utf-8")), [])
    return found


def test_only_a_models_display_methods_import_the_faces():
    """The one upward edge: ``_repr_html_``, ``*_styler``, ``*_frame`` and ``plot_*`` methods of a model import
    ``notebook.display`` when a notebook shows it. Any other import of a face from below is a new cycle."""
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).parts
        if relative[0] in FACES or relative[0] in ("cli.py", "__init__.py"):
            continue
        for within, target, _ in _imports(path):
            if target.startswith(("erd_preflight.notebook", "erd_preflight.cli")):
                assert within and DISPLAY_METHODS.match(within[-1]) and target in VIEWS, \
                    f"{path.relative_to(ROOT)}: {'.'.join(within) or 'module level'} imports {target}"


def test_no_module_is_above_the_line_limit_and_no_private_name_crosses_modules():
    for path in PACKAGE.rglob("*.py"):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines (at most {MAX_LINES}): split it"
        for within, target, names in _imports(path):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            assert not private, f"{path.relative_to(ROOT)} imports {private} from {target}"


def _graph() -> dict[str, set[str]]:
    """Module -> the modules it imports, function-level imports too; a display method's import of the view layer
    and a module's import of its own package (a package's ``__init__`` imports its modules) are left out."""
    modules: dict[str, Path] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        edges: set[str] = set()
        for within, target, names in _imports(path):
            if within and DISPLAY_METHODS.match(within[-1]) and target in VIEWS:
                continue
            edges |= {t for t in [target, *(f"{target}.{n}" for n in names)] if t in modules}
        graph[module] = {t for t in edges if t != module and not module.startswith(t + ".")}
    return graph


def test_no_module_imports_itself_through_others():
    """A new cycle fails here, with its modules: Python runs function-level imports, so they count."""
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the path being walked, 2: done

    def walk(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycle = path[path.index(target):] + [target]
                raise AssertionError("an import cycle: " + " -> ".join(cycle))
            if target not in state:
                walk(target, path + [target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])
