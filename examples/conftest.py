"""Make every example's folder importable, as ``PYTHONPATH=examples/<name>`` would."""

import sys
from pathlib import Path

for folder in sorted(Path(__file__).parent.iterdir()):
    if folder.is_dir() and not folder.name.startswith((".", "_")):
        sys.path.insert(0, str(folder))
