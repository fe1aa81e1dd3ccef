"""What ``imgsearch`` reports as a failure with a message, rather than a traceback."""


class CommandFailed(Exception):
    """A failure with a message for the user (exit status 1), such as an unreachable API."""
