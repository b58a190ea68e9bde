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


def test_pseudo_label_quality_by_hand(tmp_path):
    """bench/pseudo_label_quality.py on a 2×4 image whose answers are counted by hand."""
    import sys

    import numpy as np

    sys.path.insert(0, str(ROOT / "bench"))
    from pseudo_label_quality import ir_label_quality

    from misc import artifacts
    from misc.io import save_png

    root, ir_dir = str(tmp_path / "data"), str(tmp_path / "ir")
    gt = np.array([[1, 1, 0, 0], [1, 0, 0, 255]], np.uint8)
    label = np.array([[1, 1, 1, 255], [0, 0, 0, 1]], np.uint8)  # last pixel: ground truth 255, not counted
    save_png(artifacts.mask_path(root, "a"), gt)
    save_png(artifacts.ir_label_path(ir_dir, "a"), label)
    q = ir_label_quality(root, ["a"], ir_dir)
    # 7 valid pixels: foreground labels at 3 (2 right), background at 3 (2 right), 1 unsure
    assert q["fg_cover"] == pytest.approx(3 / 7) and q["fg_precision"] == pytest.approx(2 / 3)
    assert q["bg_cover"] == pytest.approx(3 / 7) and q["bg_precision"] == pytest.approx(2 / 3)
    assert q["unsure"] == pytest.approx(1 / 7)
