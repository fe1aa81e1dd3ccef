"""The ports local mode listens on: a port that is taken is reported before anything else starts.

moto's server binds on a thread of its own and, when the port is taken, leaves its caller waiting for
a server that never comes; the API server would only find out after the model has loaded. Checking
first turns both into one line that says which port and what to do.
"""

from __future__ import annotations

import errno
import socket


class PortInUseError(Exception):
    """Something already listens on ``host:port``."""

    def __init__(self, *, host: str, port: int, role: str) -> None:
        super().__init__(
            f"{role} cannot listen on {host}:{port}: the port is in use (another `imgsearch serve`?); "
            "stop what listens there, or choose another port"
        )
        self.host = host
        self.port = port


def ensure_free(host: str, port: int, *, role: str) -> None:
    """Raise ``PortInUseError`` if ``host:port`` cannot be bound now; port 0 (any free one) always can."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind: TIME_WAIT is free
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise PortInUseError(host=host, port=port, role=role) from error
            raise
