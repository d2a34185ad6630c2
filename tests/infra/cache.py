"""Where downloaded PostgreSQL builds, the compiled locales and the test virtualenv live between runs,
and `built_once`, the one way anything is built into it.

Several threads (the servers start in parallel) and several processes (two `make` runs sharing one cache)
may ask for the same build at once on an empty cache: one builds it, under a lock file beside it, the others
wait and then use its result."""
import fcntl
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable


def cache_dir() -> Path:
    # Read on each call, so a test can point it at an empty folder.
    return Path(os.environ.get("AZEXT_PGDUMP_CACHE", "/var/tmp/azext-pgdump"))


def ensure_cache() -> Path:
    # World-readable on purpose: the PostgreSQL servers run as an unprivileged user who must
    # be able to execute the binaries kept here (root's home is not traversable by them).
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    cache.chmod(0o755)
    return cache


@contextmanager
def locked(path: Path):
    """Hold an exclusive lock on `path` (created if missing) against other threads and processes.
    flock locks belong to an open file, so two threads of one process exclude each other too."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def built_once(dest: Path, build: Callable[[Path], Path], done: Callable[[Path], bool]) -> Path:
    """`dest`, built by `build(work)` if `done(dest)` is not yet true. `build` gets an empty folder beside
    `dest` and returns the tree to move into place; the move is one rename, so `dest` is never seen half built."""
    if done(dest):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.parent.chmod(0o755)
    with locked(dest.parent / f".{dest.name}.lock"):
        if done(dest):  # built by whoever held the lock before us
            return dest
        if dest.exists():  # not complete: left by a run that did not lock (an older version of this file)
            shutil.rmtree(dest)
        with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{dest.name}.") as tmp:
            try:
                os.rename(build(Path(tmp)), dest)
            except OSError:
                if not done(dest):  # else: an unlocked builder got there first, and its result is complete
                    raise
    return dest
