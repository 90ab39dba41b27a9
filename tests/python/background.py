"""Runs a client call in a thread and records how it ended, for cancel checks."""

import threading
import time

# Long enough to be cancelled mid-run on any machine.
SLOW_QUERY = "SELECT count(*) FROM generate_series(1, 20000000000) AS t(x) WHERE x % 7 = 3"


def in_background(call):
    """Starts `call()` in a thread. Returns the thread and a dict that gets `error` (the exception,
    or None) and `seconds` when the call ends."""
    outcome = {}

    def run():
        started = time.monotonic()
        try:
            call()
            outcome["error"] = None
        except Exception as e:  # noqa: BLE001 (any error type is the outcome under test)
            outcome["error"] = e
        outcome["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome
