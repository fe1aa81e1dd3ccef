"""``imgsearch`` run in this process, as an operator runs it on a machine configured for one deployment."""

from __future__ import annotations

import os
from contextlib import redirect_stdout
from io import StringIO

import pytest

from localmode import cli
from simsearch.settings import Settings


def imgsearch(monkeypatch: pytest.MonkeyPatch, settings: Settings, *argv: str) -> tuple[int, str]:
    """``imgsearch <argv>`` with ``settings`` as the only ``SIMSEARCH_*`` variables: (exit status, stdout)."""
    for name in [n for n in os.environ if n.startswith("SIMSEARCH_")]:
        monkeypatch.delenv(name)
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    out = StringIO()
    with redirect_stdout(out):
        status = cli.main(list(argv))
    return status, out.getvalue()
