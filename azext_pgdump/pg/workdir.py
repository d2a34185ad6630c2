"""The work directory: dumps, cleaned roles, error logs and a manifest that says what they are."""
import hashlib
import os
import re
import tempfile
import time
from pathlib import Path

MANIFEST = 'migration.json'


class WorkDirError(Exception):
    pass


def default_path() -> Path:
    return Path.cwd() / time.strftime('pgdump-%Y%m%d-%H%M%S')


def file_stem(database: str) -> str:
    """A file name for a database name that may hold spaces, quotes, slashes or non-ASCII letters."""
    if re.fullmatch(r'[A-Za-z0-9_][A-Za-z0-9_.-]{0,100}', database):
        return database
    slug = re.sub(r'[^A-Za-z0-9_.-]+', '_', database).strip('._')[:60] or 'db'
    return f'{slug}-{hashlib.sha1(database.encode()).hexdigest()[:8]}'


def prepare(path: Path, reuse: bool) -> Path:
    """Create the directory, refusing one that holds another migration unless `reuse` says so."""
    path = path.resolve()
    if (path / MANIFEST).exists() and not reuse:
        raise WorkDirError(f'{path} already holds a migration ({MANIFEST}).')
    if path.exists() and not path.is_dir():
        raise WorkDirError(f'{path} exists and is not a directory.')
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)  # dumps hold data; keep them to the user who made them
    return path


def private_file(path: Path, text: str) -> None:
    """Whole or not at all, and on the disk before we go on (a full disk or a crash leaves the previous
    file); private like everything here (mkstemp makes it 0600). A temporary name of its own: two processes may
    write the same file (a run waiting for its cutover, and the cutover)."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    tmp = Path(name)
    try:
        with os.fdopen(fd, 'w') as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    """The rename itself survives a crash only once the directory is on the disk (not on Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
