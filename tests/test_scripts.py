"""The shell scripts users run (demo.sh, bench/*.sh) parse, and the Python snippets they embed compile."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted([ROOT / "demo.sh", *(ROOT / "bench").glob("*.sh"), ROOT / ".ci" / "run"])


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shell_script_parses(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_embedded_python_compiles(script):
    text = script.read_text()
    for k, body in enumerate(re.findall(r"<<'EOF'\n(.*?)\nEOF\n", text, flags=re.S)):
        compile(body, f"{script.name}:heredoc{k}", "exec")
