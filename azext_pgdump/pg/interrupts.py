"""SIGTERM and SIGHUP as an exception, so that `finally` blocks run: child processes are stopped, the
manifest says "interrupted" and temporary firewall rules are removed when a pipeline cancels a job or an
SSH session closes, as they are on Ctrl-C. Children also die with us when we are killed outright."""
import ctypes
import signal
import sys
from contextlib import contextmanager

# SIGHUP does not exist on Windows.
EXIT_SIGNALS = tuple(s for s in (getattr(signal, 'SIGTERM', None), getattr(signal, 'SIGHUP', None)) if s)
_PR_SET_PDEATHSIG = 1
_PENDING = None   # the exception the first signal raised, until a run's loop has seen it (see raise_if_pending)


@contextmanager
def sigterm_as_exit():
    """The first Ctrl-C, SIGTERM or SIGHUP unwinds the command; later ones only say that clean-up is under way,
    so that an impatient second Ctrl-C cannot skip removing the firewall rules or stopping the children."""
    previous = {sig: signal.getsignal(sig) for sig in (*EXIT_SIGNALS, signal.SIGINT)}

    def on_signal(signum, _frame):
        global _PENDING  # pylint: disable=global-statement
        for sig in previous:
            signal.signal(sig, _while_cleaning_up)
        _PENDING = KeyboardInterrupt() if signum == signal.SIGINT else SystemExit(128 + signum)
        raise _PENDING
    for sig in previous:
        signal.signal(sig, on_signal)
    try:
        yield
    finally:
        _clear()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def raise_if_pending() -> None:
    """Raise again a signal's exception that was raised where Python swallows exceptions (a __del__ or a weakref
    callback of a library, as urllib3's): the loops of a run call it, so a Ctrl-C is never lost. Once raised here
    it is cleared: the exception then unwinds the run like the first one should have."""
    pending = _PENDING
    if pending is not None:
        _clear()
        raise pending


def _clear() -> None:
    global _PENDING  # pylint: disable=global-statement
    _PENDING = None


def _while_cleaning_up(_signum, _frame):
    print('Stopping: cleaning up first (child processes, temporary firewall rules, the manifest)...',
          file=sys.stderr, flush=True)


def die_with_parent() -> None:
    """In a child, before exec: the kernel sends it SIGKILL when we die, even by SIGKILL (Linux)."""
    if sys.platform.startswith('linux'):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@contextmanager
def shielded():
    """SIGTERM, SIGHUP and SIGINT only say that clean-up is under way while it runs, so that a second one
    cannot cut it short (and an impatient user learns why nothing else happens)."""
    previous = {sig: signal.getsignal(sig) for sig in (*EXIT_SIGNALS, signal.SIGINT)}
    for sig in previous:
        signal.signal(sig, _while_cleaning_up)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
