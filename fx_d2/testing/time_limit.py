"""A time limit for tests of calls that could block forever (a FIFO read, an endless loop)."""

import contextlib
import signal
from typing import Iterator

__all__ = ["time_limit"]


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """``with time_limit(10): ...`` raises TimeoutError if the block runs longer than ``seconds``
    (SIGALRM: POSIX, main thread only)."""

    def hang(signum, frame):
        raise TimeoutError(f"still running after {seconds} s (a hang)")

    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
