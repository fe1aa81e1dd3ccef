"""Run a snippet in a fresh Python process, as a Lambda container imports a handler: module-level state
(the resolver, an environment built at initialisation) is made anew under the environment given."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def last_json_line(code: str, environment: Mapping[str, str], *, unset: Collection[str] = ()) -> Any:
    """The JSON the snippet prints last, run from the project root with ``lambdas`` and the root on the
    path; ``unset`` names variables of this process the snippet must not inherit."""
    env = {name: value for name, value in os.environ.items() if name not in unset}
    env |= {"PYTHONPATH": os.pathsep.join(["lambdas", "."]), **environment}
    command = [sys.executable, "-c", code]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=120)
    return json.loads(done.stdout.strip().splitlines()[-1])
