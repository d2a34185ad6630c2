"""PostgreSQL refuses to run as root: when the tests run as root, its processes run as an
unprivileged OS user (Debian's `postgres` when it exists, else one created for the purpose)."""
import os
import pwd
import shutil
import subprocess
from pathlib import Path

from .cache import ensure_cache, locked

CREATED_USER = "azext-pg"


def server_user():
    """The pwd entry of the user servers run as, or None when we are not root."""
    if os.geteuid() != 0:
        return None
    entry = _existing()
    if entry is None:
        # Servers start in parallel threads, and other runs may share the machine: one creates the user.
        with locked(ensure_cache() / ".useradd.lock"):
            entry = _existing()
            if entry is None:
                subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                                CREATED_USER], check=True, timeout=60)
                entry = pwd.getpwnam(CREATED_USER)
    return entry


def _existing():
    for name in ("postgres", CREATED_USER):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    return None


def run_kwargs() -> dict:
    """subprocess keyword arguments that drop privileges to the server user."""
    entry = server_user()
    if entry is None:
        return {}
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def give(path: Path) -> None:
    """Hand a file or a tree to the server user."""
    entry = server_user()
    if entry is None:
        return
    for p in [path, *(path.rglob("*") if path.is_dir() else [])]:
        shutil.chown(p, entry.pw_uid, entry.pw_gid)
