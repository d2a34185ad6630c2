"""A real PostgreSQL server configured the way Azure Database for PostgreSQL is.

TCP only on loopback, TLS required (certificate from the test CA), password authentication only,
Azure's service roles present, and an administrator login that is NOT a superuser but has CREATEDB
and CREATEROLE and is a member of azure_pg_admin. The bootstrap superuser is used by the test
harness only; the tool under test never uses it.

`disk="azure"`: the server's data on a disk like Flexible's (see AZURE_DISK_SETTINGS and diskquota.py);
the default `disk="local"` runs without fsync, as fast as tests need.

Two shapes (see `single_server` and `flexible_server`):
- Flexible: PostgreSQL 12+, bootstrapped by `postgres`, scram-sha-256, initialised with en_US.utf8.
- Single: PostgreSQL 10/11 bootstrapped by `azure_superuser` (so `public` is owned by it, with the
  pre-15 `=UC` grant to PUBLIC), md5 passwords, Windows locale names on every database."""
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import psycopg.sql

from . import diskquota, osuser
from .certs import Certs
from .locales import FLEXIBLE_LOCALE, WINDOWS_LOCALE, locpath
from .net import free_port
from .pgbin import bindir

AZURE_SETUP = [
    "CREATE ROLE azure_pg_admin NOLOGIN",
    "CREATE ROLE azuresu SUPERUSER NOLOGIN",
    "CREATE ROLE replication NOLOGIN REPLICATION",
    "CREATE DATABASE azure_maintenance OWNER azure_superuser",
    "REVOKE CONNECT ON DATABASE azure_maintenance FROM PUBLIC",
    "CREATE DATABASE azure_sys OWNER azure_superuser",
]

# The default test server: no disk at all, as fast as the tests need.
LOCAL_DISK_SETTINGS = """
fsync = off
full_page_writes = off
synchronous_commit = off
"""
# A Flexible server on a P10 (128 GiB) Premium SSD. Source: Microsoft's server parameter tables for Flexible
# ("Write-ahead log / Checkpoints", "Write-ahead log / Settings", learn.microsoft.com/azure/postgresql/
# flexible-server/param-write-ahead-log-checkpoints, 2025): fsync, full_page_writes and synchronous_commit are
# read-only "on"; checkpoint_timeout 600; max_wal_size is set from the disk size at creation, 12288 MiB for
# 128 GiB (2048 MiB for 32 GiB); checkpoint_flush_after 32 pages (read-only) and bgwriter_flush_after 64
# pages, PostgreSQL's Linux defaults. backend_flush_after is OURS, not Azure's (its default is 0): it makes
# backends start the writeback of what they write themselves (a bulk COPY evicts its own pages), so those
# writes are submitted by the server's processes and pay the blkio cap; without it the kernel's flusher
# threads write them later, outside any cgroup, and the cap would not hold (diskquota.py).
AZURE_DISK_SETTINGS = """
fsync = on
full_page_writes = on
synchronous_commit = on
checkpoint_timeout = 600
max_wal_size = 12288MB
checkpoint_flush_after = 256kB
bgwriter_flush_after = 512kB
backend_flush_after = 256kB
"""


@dataclass
class PgServer:
    name: str
    major: int
    certs: Certs
    host: str = "127.0.0.1"
    admin: str = "pgadmin"
    port: int = field(default_factory=free_port)
    superuser_password: str = field(default_factory=lambda: "pw" + secrets.token_urlsafe(18))
    admin_password: str = field(default_factory=lambda: "pw" + secrets.token_urlsafe(18))
    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="azext-pg-")))
    bootstrap: str = "postgres"            # the superuser initdb creates (the harness's login)
    password_encryption: str = "scram-sha-256"
    auth_method: str = "scram-sha-256"     # pg_hba method
    locale: str = "C.UTF-8"
    conf: dict = field(default_factory=dict)   # more postgresql.conf settings (wal_level = logical, ...)
    disk: str = "local"                    # "azure": fsync on, P10-like write cap (diskquota.AzureDisk)
    azure_disk: diskquota.AzureDisk = field(default=None, init=False, repr=False)

    @property
    def bindir(self) -> Path:
        return bindir(self.major)

    @property
    def datadir(self) -> Path:
        # On the capped disk the data directory is the filesystem's top folder's child (the top holds lost+found).
        return self.base / ("disk" if self.disk == "azure" else "") / "data"

    @property
    def logfile(self) -> Path:
        return self.base / "server.log"

    def _pg(self, program: str, *args: str, timeout: int = 120) -> None:
        # cwd: the server user may not enter the caller's folder (a mktemp clone, root's home).
        # LOCPATH: the Windows-named and en_US locales live in a private folder, not on the system.
        # stderr kept for the exception only: initdb of a Windows-named locale warns on every line.
        # HOME: the server's own libpq (a subscription's connection) reads ~/.postgresql; root's is not its to read.
        subprocess.run([str(self.bindir / program), *args], check=True, timeout=timeout, cwd=self.base,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       env=dict(os.environ, LOCPATH=str(locpath()), HOME=str(self.base)), **osuser.run_kwargs())

    def start(self) -> "PgServer":
        if self.disk == "azure":
            # Nobody else stops this server if start() fails: release the disk and the group here.
            self.azure_disk = diskquota.AzureDisk(self.base, f"{self.name}-{self.port}")
            try:
                return self._start()
            except BaseException:
                self._stop_quietly()
                shutil.rmtree(self.base, ignore_errors=True)
                raise
        return self._start()

    def _stop_quietly(self) -> None:
        try:
            self._pg("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "-t", "60", "stop")
        except (subprocess.SubprocessError, OSError):
            pass  # it never started
        self._release_disk()

    def _release_disk(self) -> None:
        if self.azure_disk is not None:
            self.azure_disk.close()
            self.azure_disk = None

    def _start(self) -> "PgServer":
        self.base.chmod(0o700)
        pwfile = self.base / "pwfile"
        pwfile.write_text(self.superuser_password + "\n")
        for src in (self.certs.cert, self.certs.key):
            shutil.copy(src, self.base / src.name)
        (self.base / "server.key").chmod(0o600)
        osuser.give(self.base)
        self._pg("initdb", "-D", str(self.datadir), "-U", self.bootstrap, f"--pwfile={pwfile}",
                 "-A", self.auth_method, "-E", "UTF8", f"--locale={self.locale}")
        pwfile.unlink()
        self._configure()
        self._pg_ctl_start()
        service = [] if self.bootstrap == "azure_superuser" else ["CREATE ROLE azure_superuser SUPERUSER NOLOGIN"]
        for statement in service + AZURE_SETUP + [
                f"CREATE ROLE {self.admin} LOGIN CREATEDB CREATEROLE IN ROLE azure_pg_admin "
                f"PASSWORD '{self.admin_password}'"]:
            self.execute(statement)
        return self

    def _configure(self) -> None:
        conf = self.datadir / "postgresql.conf"
        with conf.open("a") as f:
            f.write(f"""
listen_addresses = '{self.host}'
port = {self.port}
unix_socket_directories = ''
ssl = on
ssl_cert_file = '{self.base / 'server.crt'}'
ssl_key_file = '{self.base / 'server.key'}'
password_encryption = '{self.password_encryption}'
max_connections = 60
shared_buffers = 32MB
""" + (AZURE_DISK_SETTINGS if self.disk == "azure" else LOCAL_DISK_SETTINGS))
            f.writelines(f"{name} = '{value}'\n" for name, value in self.conf.items())
        self._write_hba(None)

    def _write_hba(self, admitted_cidrs) -> None:
        # hostssl only: a client without TLS gets "no pg_hba.conf entry ... no encryption", as Azure
        # refuses it; there is no unix socket and no trust method at all. With a firewall, only the
        # harness superuser is always admitted; everyone else needs a rule covering their address.
        if admitted_cidrs is None:
            lines = [f"hostssl all all {self.host}/32 {self.auth_method}"]
        else:
            lines = [f"hostssl all {self.bootstrap} {self.host}/32 {self.auth_method}"]
            lines += [f"hostssl all all {cidr} {self.auth_method}" for cidr in admitted_cidrs]
        (self.datadir / "pg_hba.conf").write_text("\n".join(lines) + "\n")

    def set_firewall(self, admitted_cidrs) -> None:
        """None: admit every address; a list: admit only those (Azure's firewall, as pg_hba rules)."""
        self._write_hba(admitted_cidrs)
        self.execute("SELECT pg_reload_conf()")
        time.sleep(0.3)  # the postmaster reloads on SIGHUP, just after the call returns

    def halt(self) -> None:
        """Stop at once, as a crashed or failed-over server does: sessions cut, nothing cleaned up."""
        self._pg("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "-t", "60", "stop")

    def restart(self) -> None:
        """Start again after halt(), with the same data, port and configuration."""
        self._pg_ctl_start()

    def _pg_ctl_start(self) -> None:
        # On the capped disk, pg_ctl starts from a thread inside the blkio group: the postmaster and every
        # process it forks (checkpointer, walwriter, each backend) inherit the group from birth.
        if self.azure_disk is None:
            self._pg("pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile), "-w", "-t", "60", "start")
            return
        with self.azure_disk.inside():
            self._pg("pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile), "-w", "-t", "60", "start")

    def postmaster_pid(self) -> int:
        return int((self.datadir / "postmaster.pid").read_text().split()[0])

    def stop(self) -> None:
        try:
            if (self.datadir / "postmaster.pid").exists():
                self._pg("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "-t", "60", "stop")
        finally:
            if self.azure_disk is not None and (self.datadir / "postmaster.pid").exists():
                self._stop_quietly()  # a server still running keeps its disk busy: it could not be unmounted
            self._release_disk()
            shutil.rmtree(self.base, ignore_errors=True)

    def conninfo(self, dbname: str = "postgres", superuser: bool = True) -> dict:
        user, password = (self.bootstrap, self.superuser_password) if superuser else (self.admin, self.admin_password)
        return dict(host=self.host, port=self.port, dbname=dbname, user=user, password=password,
                    sslmode="verify-full", sslrootcert=str(self.certs.ca), connect_timeout=10)

    def connect(self, dbname: str = "postgres", superuser: bool = True, **kw) -> psycopg.Connection:
        return psycopg.connect(**{**self.conninfo(dbname, superuser), "autocommit": True, **kw})

    def execute(self, sql, params=None, dbname: str = "postgres") -> list:
        with self.connect(dbname) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def drop_database(self, name: str) -> None:
        """DROP DATABASE IF EXISTS, closing its sessions first (WITH (FORCE) needs PostgreSQL 13)."""
        self.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> "
                     "pg_backend_pid()", (name,))
        with self.connect() as conn:
            conn.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {}").format(psycopg.sql.Identifier(name)))

    def version_num(self) -> int:
        return int(self.execute("SHOW server_version_num")[0][0])


def single_server(name: str, major: int, certs: Certs) -> PgServer:
    """What an Azure Single Server was: an old major on Windows, bootstrapped by azure_superuser, md5 hashes.
    The gateway rewrites `user@server` to `user`, and an md5 challenge hashes the name the client sent, so
    (as Azure's gateway did) the password is checked against the stored md5 hash from the TLS-protected
    cleartext exchange (pg_hba `password`), never by md5 challenge."""
    return PgServer(name=name, major=major, certs=certs, bootstrap="azure_superuser", password_encryption="md5",
                    auth_method="password", locale=WINDOWS_LOCALE)


def flexible_server(name: str, major: int, certs: Certs, disk: str = "local") -> PgServer:
    return PgServer(name=name, major=major, certs=certs, locale=FLEXIBLE_LOCALE, disk=disk)


def vm_and_flexible(stack, prefix: str, certs: Certs, source_major: int = 15, target_major: int = 16) -> tuple:
    """A PostgreSQL on a VM as a source and a Flexible-shaped target, started, stopped when `stack` closes:
    for tests that stop servers or fill them, away from the shared world."""
    source = PgServer(name=f"{prefix}src", major=source_major, certs=certs, locale=FLEXIBLE_LOCALE)
    target = flexible_server(f"{prefix}tgt", target_major, certs)
    for server in (source, target):
        server.start()
        stack.callback(server.stop)
    return source, target
