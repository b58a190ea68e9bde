"""The layout rules that keep step/ a layer of passes: checked on the source, so a new shortcut fails here."""
from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEP_DIR = os.path.join(ROOT, "step")
LIBRARY_DIRS = ("misc", "net", "data")


def _imported_modules(path: str) -> list[tuple[int, str]]:
    """(line, module) of every import in the file, at any depth (lazy imports inside functions included)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: "from . import x" inside step/ is step.x
                found.append((node.lineno, "step." + (node.module or "")))
            else:
                found += [(node.lineno, node.module or "")]
                if node.module == "step":  # "from step import make_cam"
                    found += [(node.lineno, f"step.{alias.name}") for alias in node.names]
    return found


def _python_files(folder: str) -> list[str]:
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".py"))


def _pass_imports(path: str) -> list[str]:
    return [f"{os.path.relpath(path, ROOT)}:{line} imports {module}" for line, module in _imported_modules(path)
            if module == "run_sample" or module == "step" or module.startswith("step.")]


def test_the_ast_check_catches_every_import_form(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import step.make_cam\nfrom step.eval_cam import x\nfrom step import predict\n"
                   "def f():\n    from step.train_irn import y\n    import run_sample\n")
    modules = [m for _, m in _imported_modules(str(bad))]
    assert {"step.make_cam", "step.eval_cam", "step.predict", "step.train_irn", "run_sample"} <= set(modules)
    assert len(_pass_imports(str(bad))) == 6  # "from step import predict" counts as step and step.predict


@pytest.mark.parametrize("path", _python_files(STEP_DIR), ids=os.path.basename)
def test_no_pass_imports_another_pass(path):
    assert _pass_imports(path) == [], "passes share code through misc/, net/ or data/, never through each other"


@pytest.mark.parametrize("folder", LIBRARY_DIRS)
def test_the_library_never_imports_a_pass(folder):
    offenders = [hit for path in _python_files(os.path.join(ROOT, folder)) for hit in _pass_imports(path)]
    assert offenders == []


def test_parsing_the_command_line_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, misc.cli; misc.cli.build_parser().parse_args([]); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_ignore_index_is_defined_once():
    definitions = []
    for folder in ("misc", "net", "data", "step"):
        for path in _python_files(os.path.join(ROOT, folder)):
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read())
            definitions += [os.path.relpath(path, ROOT) for node in tree.body if isinstance(node, ast.Assign)
                            for t in node.targets if isinstance(t, ast.Name) and t.id == "IGNORE_INDEX"]
    assert definitions == ["misc/artifacts.py"]
