"""Find pg_dump, pg_dumpall, pg_restore and psql, and pick a set new enough for both servers."""
import glob
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

PROGRAMS = ('pg_dump', 'pg_dumpall', 'pg_restore', 'psql', 'createdb', 'dropdb', 'vacuumdb')
SEARCH_GLOBS = ('/usr/lib/postgresql/*/bin', '/usr/pgsql-*/bin', '/opt/homebrew/opt/postgresql@*/bin',
                '/usr/local/opt/postgresql@*/bin', '/Library/PostgreSQL/*/bin')


class ToolsError(Exception):
    pass


@dataclass(frozen=True)
class Toolset:
    bindir: Path
    version: str      # "18.6"
    major: int

    def path(self, program: str) -> str:
        return str(self.bindir / program)


def _version_of(bindir: Path) -> Optional[Toolset]:
    if not all((bindir / p).is_file() and os.access(bindir / p, os.X_OK) for p in PROGRAMS):
        return None
    try:
        out = subprocess.run([str(bindir / 'pg_dump'), '--version'], capture_output=True, text=True,
                             timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    # "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)" or "pg_dump (PostgreSQL) 18beta1"
    match = re.search(r'\)\s*(\d+)(?:\.\d+)?', out)
    if not match:
        return None
    return Toolset(bindir=bindir, version=match.group(0).lstrip(') '), major=int(match.group(1)))


def candidate_dirs(explicit: Optional[str] = None) -> list:
    if explicit:
        return [Path(explicit)]
    dirs = []
    on_path = shutil.which('pg_dump')
    if on_path:
        dirs.append(Path(os.path.realpath(on_path)).parent)
        dirs.append(Path(on_path).parent)
    for pattern in SEARCH_GLOBS:
        dirs.extend(Path(p) for p in sorted(glob.glob(pattern)))
    seen, unique = set(), []
    for d in dirs:
        if d not in seen:
            seen.add(d)
            unique.append(d)
    return unique


def discover(explicit: Optional[str] = None) -> list:
    return [t for t in (_version_of(d) for d in candidate_dirs(explicit)) if t]


def choose(found: Iterable[Toolset], needed_major: int, explicit: Optional[str] = None) -> Toolset:
    """The newest set whose major version is at least `needed_major` (the newer of both servers)."""
    found = list(found)
    fitting = sorted((t for t in found if t.major >= needed_major), key=lambda t: t.major, reverse=True)
    if fitting:
        return fitting[0]
    seen = ', '.join(f'{t.version} in {t.bindir}' for t in found) or 'none'
    where = f'in {explicit}' if explicit else 'on PATH or under /usr/lib/postgresql/*/bin'
    raise ToolsError(f'The PostgreSQL utilities must be version {needed_major} or newer (the newer of both '
                     f'servers); found {where}: {seen}.')
