"""Find pg_dump, pg_dumpall, pg_restore and psql, and pick a set new enough for both servers.

Where they live: --pg-bin-dir alone when given; else the sets `install-utilities` installed (the callers pass
their folders in: where az keeps its configuration is not the data plane's to know), PATH, then where each
platform's installers put them (Debian/Ubuntu, RHEL, Homebrew, EDB's macOS installer; on Windows EDB's
installer under Program Files, where the programs end in .exe)."""
import glob
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence

PROGRAMS = ('pg_dump', 'pg_dumpall', 'pg_restore', 'psql', 'createdb', 'dropdb', 'vacuumdb')
SEARCH_GLOBS = ('/usr/lib/postgresql/*/bin', '/usr/pgsql-*/bin', '/opt/homebrew/opt/postgresql@*/bin',
                '/usr/local/opt/postgresql@*/bin', '/Library/PostgreSQL/*/bin')
# Environment variables that name the Program Files folders (64-bit and 32-bit), and their usual values.
WINDOWS_PROGRAM_FILES = (('ProgramW6432', r'C:\Program Files'), ('ProgramFiles', r'C:\Program Files'),
                         ('ProgramFiles(x86)', r'C:\Program Files (x86)'))


def is_windows(system: str = sys.platform) -> bool:
    return system.startswith('win')


def executable(program: str, system: str = sys.platform) -> str:
    return program + '.exe' if is_windows(system) else program


def search_globs(system: str = sys.platform, environ: Mapping = os.environ) -> list:
    if not is_windows(system):
        return list(SEARCH_GLOBS)
    roots = []
    for variable, default in WINDOWS_PROGRAM_FILES:
        root = environ.get(variable) or default
        if root not in roots:
            roots.append(root)
    return [os.path.join(root, 'PostgreSQL', '*', 'bin') for root in roots]


class ToolsError(Exception):
    pass


@dataclass(frozen=True)
class Toolset:
    bindir: Path
    version: str      # "18.6"
    major: int
    system: str = sys.platform

    def path(self, program: str) -> str:
        return str(self.bindir / executable(program, self.system))


def _version_of(bindir: Path, system: str = sys.platform) -> Optional[Toolset]:
    files = [bindir / executable(p, system) for p in PROGRAMS]
    if not all(f.is_file() and os.access(f, os.X_OK) for f in files):
        return None
    try:
        out = subprocess.run([str(files[0]), '--version'], capture_output=True, text=True,
                             timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    # "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)" or "pg_dump (PostgreSQL) 18beta1"
    match = re.search(r'\)\s*(\d+)(?:\.\d+)?', out)
    if not match:
        return None
    return Toolset(bindir=bindir, version=match.group(0).lstrip(') '), major=int(match.group(1)), system=system)


def candidate_dirs(explicit: Optional[str] = None, system: str = sys.platform, environ: Mapping = os.environ,
                   installed: Sequence[Path] = ()) -> list:
    if explicit:
        return [Path(explicit)]
    dirs = [Path(d) for d in installed]
    on_path = shutil.which('pg_dump', path=environ.get('PATH'))  # PATHEXT finds pg_dump.exe on Windows
    if on_path:
        dirs.append(Path(os.path.realpath(on_path)).parent)
        dirs.append(Path(on_path).parent)
    for pattern in search_globs(system, environ):
        dirs.extend(Path(p) for p in sorted(glob.glob(pattern)))
    seen, unique = set(), []
    for d in dirs:
        if d not in seen:
            seen.add(d)
            unique.append(d)
    return unique


def discover(explicit: Optional[str] = None, system: str = sys.platform, environ: Mapping = os.environ,
             installed: Sequence[Path] = ()) -> list:
    """Every working set, in the order of candidate_dirs (of two of the same major, choose takes the first)."""
    return [t for t in (_version_of(d, system) for d in candidate_dirs(explicit, system, environ, installed)) if t]


def choose(found: Iterable[Toolset], needed_major: int, explicit: Optional[str] = None,
           closest_to: Optional[int] = None) -> Toolset:
    """A set whose major version is at least `needed_major` (the newer of both servers): with a target, the one
    closest to the target's major (a 15 -> 15 move then never meets settings only 18's pg_restore writes, such
    as transaction_timeout), else the newest."""
    found = list(found)
    fitting = sorted((t for t in found if t.major >= needed_major), key=lambda t: t.major, reverse=True)
    if closest_to is not None:
        fitting.sort(key=lambda t: abs(t.major - closest_to))
    if fitting:
        return fitting[0]
    seen = ', '.join(f'{t.version} in {t.bindir}' for t in found) or 'none'
    where = f'in {explicit}' if explicit else \
        f"among the installed utilities, on PATH or under {' or '.join(search_globs()[:2])}"
    raise ToolsError(f'The PostgreSQL utilities must be version {needed_major} or newer (the newer of both '
                     f'servers); found {where}: {seen}.')
