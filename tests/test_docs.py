"""Run the code blocks of docs/ that are marked ``<!-- tested -->``."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"<!-- tested -->\n```(python|bash)\n(.*?)```", re.S)


def blocks():
    for page in sorted((ROOT / "docs").glob("*.md")):
        for i, (lang, code) in enumerate(BLOCK.findall(page.read_text())):
            yield pytest.param(lang, code, id=f"{page.name}-{i}")


@pytest.mark.parametrize(("lang", "code"), list(blocks()))
def test_doc_block_runs(lang, code):
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    cmd = (
        [sys.executable, "-c", code]
        if lang == "python"
        else ["bash", "-euo", "pipefail", "-c", code]
    )
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_every_doc_page_has_tested_blocks_where_it_shows_code():
    assert len(list(blocks())) >= 5
