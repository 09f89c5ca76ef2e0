"""Busy processes that the benchmarks start beside themselves (``--background-load N``).

Users train beside data loading, a viewer or a second experiment; a kernel that is only
fast on an idle machine is not fast. Each process is a fresh interpreter spinning in plain
Python on whatever core the scheduler gives it (pinned nowhere); it is stopped when the
benchmark leaves the ``with`` block, and stops by itself after ``max_seconds``, so that a
benchmark killed with SIGKILL leaves nothing running for long.
"""

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

_SPIN = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"


@contextmanager
def background_load(processes: int, max_seconds: float = 1800.0) -> Iterator[None]:
    """Keeps ``processes`` busy-looping processes running inside the block (none for 0)."""
    workers = [subprocess.Popen([sys.executable, "-c", _SPIN.format(seconds=max_seconds)])
               for _ in range(max(processes, 0))]
    try:
        if workers:
            time.sleep(0.5)  # past the interpreters' start-up: spinning when the timing starts
        yield
    finally:
        for w in workers:
            w.kill()
            w.wait()
