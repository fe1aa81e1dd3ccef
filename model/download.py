"""One large file over HTTP(S) into a ``.part`` file, which a broken transfer leaves for the next try.

A partial file is continued with a ``Range`` request (RFC 9110 §14): ``206 Partial Content`` appends from
where it stopped, a server that ignores ranges answers ``200`` and the file restarts from its first byte,
and ``416 Range Not Satisfiable`` means the part is already whole (its size is the resource's length) or
cannot belong to it (then it restarts). Within one call a transfer that breaks after making progress is
continued a few times; one that makes none (no network, refused connection) fails at once.
``requests`` honours ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY``; every wait is bounded.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import requests
from tqdm import tqdm

from model.errors import WeightsUnavailableError

TIMEOUT_S = (10, 60)  # (connect, between two reads): a stalled transfer fails instead of hanging synth
ATTEMPTS = 5
_CHUNK = 1 << 20
_WHOLE_LENGTH = re.compile(r"/(\d+)$")  # "bytes 0-99/1000" or "bytes */1000"


class _Restart(Exception):
    """The part cannot be continued from this server; start again from the first byte."""


def download(url: str, part: Path, *, size: int | None) -> None:
    """Complete ``part`` from ``url`` (``size`` bytes when known), continuing what a previous try left.

    Raises:
        WeightsUnavailableError: the server answered an error status, or the transfer failed without
            progress; ``part`` keeps what arrived, so the next call continues it.
    """
    broken: Exception | None = None
    for _ in range(ATTEMPTS):
        before = _length(part)
        try:
            _transfer(url, part, size=size)
            return
        except _Restart:
            part.unlink(missing_ok=True)
        except requests.HTTPError as error:
            answer = error.response
            status = f"{answer.status_code} {answer.reason}" if answer is not None else str(error)
            raise WeightsUnavailableError(f"the server answered {status}") from error
        except requests.RequestException as error:
            if _length(part) == before:
                raise WeightsUnavailableError(_reason(error)) from error
            broken = error
    raise WeightsUnavailableError(f"the transfer broke {ATTEMPTS} times, last with {broken}")


def _transfer(url: str, part: Path, *, size: int | None) -> None:
    offset = _length(part)
    if size is not None and offset > size:
        raise _Restart
    if size is not None and offset == size:
        return  # whole already: an earlier run stopped between the last byte and the rename
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with requests.get(url, headers=headers, stream=True, timeout=TIMEOUT_S) as response:
        if response.status_code == requests.codes.range_not_satisfiable:
            if _whole_length(response) == offset:
                return
            raise _Restart
        response.raise_for_status()
        if response.status_code == requests.codes.partial_content:
            if not response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
                raise _Restart
        else:  # 200: the server sent the whole file, whatever was asked
            offset = 0
        length = response.headers.get("Content-Length")
        _write(response, part, offset=offset, total=offset + int(length) if length else size)


def _write(response: requests.Response, part: Path, *, offset: int, total: int | None) -> None:
    progress = tqdm(
        total=total,
        initial=offset,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=part.name.removesuffix(".part"),
        file=sys.stderr,
    )
    with part.open("ab" if offset else "wb") as file, progress:
        for chunk in response.iter_content(_CHUNK):
            file.write(chunk)
            progress.update(len(chunk))


def _reason(error: requests.RequestException) -> str:
    """The root of a failed connection ("[Errno 111] Connection refused"), not urllib3's retry story."""
    cause = getattr(error.args[0], "reason", None) if error.args else None
    return str(cause).rpartition(": ")[2] if cause is not None else str(error)


def _whole_length(response: requests.Response) -> int | None:
    match = _WHOLE_LENGTH.search(response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _length(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0
