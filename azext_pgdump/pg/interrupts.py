"""SIGTERM as an exception, so that `finally` blocks run: child processes are stopped and temporary
firewall rules removed when a pipeline cancels a job, as they are on Ctrl-C."""
import signal
from contextlib import contextmanager


@contextmanager
def sigterm_as_exit():
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, _frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def shielded():
    """Ignore SIGTERM and SIGINT while cleaning up, so a second one cannot cut the clean-up short."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in previous:
        signal.signal(sig, signal.SIG_IGN)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
