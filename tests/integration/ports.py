"""A free TCP port on 127.0.0.1, for a server a test or benchmark starts.

A module of its own, without pytest, so that the scripts that run outside
pytest (pg_support.py, tests/tutorial_runner.py, bench/*.py) share it with
conftest."""
import socket


def free_port():
    """A port the kernel just gave out and took back: free now, and not
    handed out again at once (the kernel cycles through its range)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
