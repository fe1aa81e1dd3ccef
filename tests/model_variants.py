"""Another model for the re-index tests: the same network under another model id.

As far as indexes, pointers and the model store go, a model is its id: a copy of the test model with a
new id in its manifest is a model change (its vectors differ from nothing, so counts and neighbours
can be compared exactly).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from simsearch.manifest import MANIFEST_FILE


def renamed_model(model_dir: Path, target: Path, *, suffix: str = "-second") -> Path:
    """Copy ``model_dir`` to ``target`` with ``suffix`` appended to its model id; returns ``target``."""
    shutil.copytree(model_dir, target, dirs_exist_ok=True)
    manifest = json.loads((target / MANIFEST_FILE).read_text(encoding="utf-8"))
    manifest["model_id"] += suffix
    (target / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")
    return target
