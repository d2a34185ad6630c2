"""Every child process a run starts goes through here, so that one call stops them all: tasks run on
several threads at once, and a Ctrl-C (which only the main thread sees) must not leave a pg_dump or a
COPY pipe running behind us while the firewall rules are removed."""
import subprocess
import threading
from contextlib import contextmanager

from azext_pgdump.pg.interrupts import die_with_parent

_lock = threading.Lock()
_running: set = set()
_stopping = threading.Event()


class Stopped(Exception):
    """A child was not started (or was stopped) because the run is stopping."""


@contextmanager
def started(argv: list, **kwargs):
    """subprocess.Popen (argv, never a shell) that dies with us and is stopped by stop_all()."""
    with _lock:
        if _stopping.is_set():
            raise Stopped('the run is stopping')
        proc = subprocess.Popen(argv, preexec_fn=die_with_parent, **kwargs)  # pylint: disable=consider-using-with
        _running.add(proc)
    try:
        with proc:
            try:
                yield proc
            except BaseException:
                stop(proc)  # Ctrl-C, SIGTERM or a bug: never leave a pg_dump running behind us
                raise
    finally:
        with _lock:
            _running.discard(proc)


def stopping() -> bool:
    return _stopping.is_set()


def stop_all() -> None:
    """Stop every running child and start no new one (until reset())."""
    with _lock:
        _stopping.set()
        procs = list(_running)
    for proc in procs:
        stop(proc)


def reset() -> None:
    """A new run in the same process (tests, an embedding front end) may start children again."""
    _stopping.clear()


def stop(proc) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
