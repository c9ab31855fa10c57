"""Waiting for what a server does in its own time, within a bound."""

import time

#: Seconds a test waits for such a thing at most, unless it names another bound.
DEADLINE = 20


def eventually(condition, what, seconds=DEADLINE):
    """Wait until ``condition()`` is true, looking every 50 ms for at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"waited {seconds}s for {what}, in vain")
