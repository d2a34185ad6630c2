"""Faults in the middle of a run, with real servers and real processes: the source or the target stops, a
session is killed, the work dir's disk fills up, a lock is never released. Each run must fail loudly (non-zero
exit, the database, the step and the log named, nothing reported as migrated that was not), and `--resume`
must then finish the job. Also: an Entra run longer than its token's life, and no password in any command
line, file or output.

These tests stop servers, so they have their own pair: a PostgreSQL 15 on a VM as the source and a
Flexible-shaped 16 as the target. The target restores one table slowly on purpose (its CHECK calls a function
that sleeps when the server sets azext.pace_ms), which gives each fault a window to land in."""
import json
import os
import subprocess
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.infra.azcli import AZ
from tests.infra.pgbin import bindir
from tests.infra.pgserver import vm_and_flexible
from tests.infra.world import RESOURCE_GROUP
from tests.migration_helpers import assert_same, result_of

DB = "faultdb"
COPYING_PACED = "query ~ '^COPY \"?public\"?\\.\"?paced'"   # pg_restore, psql and psycopg spell it differently
PACED_ROWS, PACE_MS = 150, 20   # about 3 s of COPY on the target
SOURCE_SQL = f"""
CREATE FUNCTION public.pace(integer) RETURNS boolean LANGUAGE sql AS
$$ SELECT true FROM pg_sleep(coalesce(nullif(current_setting('azext.pace_ms', true), ''), '0')::float / 1000) $$;
CREATE TABLE public.paced (id integer PRIMARY KEY, note text, CHECK (public.pace(id)));
INSERT INTO public.paced SELECT g, 'row ' || g FROM generate_series(1, {PACED_ROWS}) g;
CREATE TABLE public.filler (id bigint PRIMARY KEY, body text);
INSERT INTO public.filler SELECT g, md5(g::text) || repeat('x', 60) FROM generate_series(1, 100000) g;
CREATE INDEX filler_body ON public.filler (body);
CREATE SEQUENCE public.tickets START 42;
"""


@pytest.fixture(scope="module")
def pair(world, tmp_path_factory):
    with ExitStack() as stack:
        source, target = vm_and_flexible(stack, "fault", world.certs)
        admin_db(source, DB, SOURCE_SQL)
        pace(target, PACE_MS)
        yield Pair(world, source, target, tmp_path_factory.mktemp("faults"))


def pace(pg, ms):
    """Slow the paced table's restore on this server (the last setting in postgresql.conf wins)."""
    with (pg.datadir / "postgresql.conf").open("a") as conf:
        conf.write(f"azext.pace_ms = {ms}\n")
    pg.execute("SELECT pg_reload_conf()")
    time.sleep(0.3)


def admin_db(pg, name, script):
    with pg.connect(superuser=False) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    with pg.connect(name, superuser=False) as conn:
        conn.execute(script)


class Pair:
    def __init__(self, world, source, target, tmp):
        self.world, self.source, self.target, self.tmp = world, source, target, tmp
        self.secrets = [source.admin_password, target.admin_password, source.superuser_password,
                        target.superuser_password]

    def args(self, work_dir, *extra):
        s, t = self.source, self.target
        return ["postgres", "dumprestore", "run", "--databases", DB, "--no-roles", "--work-dir", str(work_dir),
                "--source-host", s.host, "--source-port", str(s.port), "--source-admin-user", s.admin,
                "--target-host", t.host, "--target-port", str(t.port), "--target-admin-user", t.admin,
                "--pg-bin-dir", str(bindir(18)), "-o", "json", *extra]

    def env(self):
        # Passwords reach az through the environment, as a pipeline passes its secrets.
        return dict(self.world.az.env, SOURCE_PW=self.source.admin_password, TARGET_PW=self.target.admin_password)

    def popen(self, work_dir, *extra):
        argv = [str(AZ), *self.args(work_dir, *extra), *self.password_args()]
        return subprocess.Popen(argv, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL)

    def password_args(self):
        return ["--source-admin-password", self.source.admin_password,
                "--target-admin-password", self.target.admin_password]

    def run(self, work_dir, *extra):
        proc = self.world.az.run(*self.args(work_dir, *extra), *self.password_args(), check=False, timeout=600)
        self.no_secret_in(proc.stdout + proc.stderr)
        return proc

    def finish(self, proc):
        out, err = proc.communicate(timeout=300)
        self.no_secret_in(out + err)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def no_secret_in(self, text):
        for secret in self.secrets:
            assert secret not in text

    def fresh_target(self):
        self.target.drop_database(DB)


def wait_for(condition, what, proc=None, timeout=120):
    deadline = time.time() + timeout
    while not condition():
        assert proc is None or proc.poll() is None, f"the run ended before {what}: {proc.communicate()}"
        assert time.time() < deadline, f"never saw {what}"
        time.sleep(0.05)


def sessions(pg, where):
    try:
        return pg.execute(f"SELECT pid FROM pg_stat_activity WHERE datname = '{DB}' AND {where}")
    except Exception:  # pylint: disable=broad-except  # the server is stopping
        return []


def failed_database(proc, step):
    """The run failed, said where, and reported the database as failed (not migrated)."""
    assert proc.returncode != 0 and proc.stdout, proc.stderr
    result = result_of(proc)
    assert result["status"] == "failed"
    db = result["databases"][0]
    assert db["name"] == DB and db["status"] == "failed" and db["failedStep"] == step, db
    assert f"{DB}: failed at step {step}" in proc.stderr and "--resume" in proc.stderr, proc.stderr
    return db


def resumed_and_equal(pair, work_dir):
    proc = pair.run(work_dir, "--resume", "--verify")
    assert proc.returncode == 0, proc.stderr
    result = result_of(proc)
    assert result["resumed"]["migratedNow"] == [DB] and result["verify"]["status"] == "passed"
    assert_same(pair.source, pair.target, DB)
    return result


def test_source_stops_during_the_dump(pair):
    pair.fresh_target()
    wd = pair.tmp / "source-stops"
    locker = pair.source.connect(DB)
    locker.execute("BEGIN; LOCK TABLE public.filler IN ACCESS EXCLUSIVE MODE")
    proc = pair.popen(wd, "--method", "directory")
    try:
        wait_for(lambda: sessions(pair.source, "application_name = 'pg_dump' AND wait_event_type = 'Lock'"),
                 "pg_dump waiting", proc)
        pair.source.halt()  # the source goes away mid-dump (a crash, a failover)
    finally:
        try:
            locker.close()
        except Exception:  # pylint: disable=broad-except
            pass
    done = pair.finish(proc)
    pair.source.restart()
    db = failed_database(done, "dump")
    assert db["failedLog"].endswith(".dump.log") and "pg_dump: error" in Path(db["failedLog"]).read_text()
    assert not [d for d in pair.target.execute("SELECT datname FROM pg_database") if d[0] == DB]
    resumed_and_equal(pair, wd)


def fault_while_paced_loads(pair, name, method, fault):
    """Start a run, wait until the target loads the paced table, then inject `fault(proc)`; the run's end."""
    pair.fresh_target()
    wd = pair.tmp / name
    proc = pair.popen(wd, "--method", method)
    wait_for(lambda: sessions(pair.target, COPYING_PACED), "the load of paced", proc)
    fault(proc)
    return wd, pair.finish(proc)


def test_target_stops_during_the_restore(pair):
    wd, done = fault_while_paced_loads(pair, "target-stops", "directory", lambda _: pair.target.halt())
    pair.target.restart()
    db = failed_database(done, "restore")
    assert db["failedLog"] == db["errorsLog"] and db["errors"]["real"] >= 1
    # The dump had finished: resume restores from it (into a database made again), it does not dump again.
    again = resumed_and_equal(pair, wd)["databases"][0]
    assert again["resumedSteps"] == ["dump"] and "dump" not in again["durations"], again


def test_a_killed_session_fails_the_copy_and_resume_copies_again(pair):
    wd, done = fault_while_paced_loads(pair, "terminated", "stream", lambda _: pair.target.execute(
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{DB}' AND {COPYING_PACED}"))
    db = failed_database(done, "copy")
    assert "public.paced" in db["error"] and "terminat" in db["error"], db["error"]
    assert db["copy"]["failed"]["table"] == "public.paced"
    resumed_and_equal(pair, wd)


def test_kill_9_mid_copy_leaves_a_run_that_resume_finishes(pair):
    """SIGKILL of az's Python (no chance to clean up): its psql and workers die with it, the manifest still says
    "running" with a pid that no longer exists, and --resume takes that as interrupted, not as busy."""
    python = []

    def kill_9(proc):
        wait_for(lambda: "public.filler" in tables_done(wd), "filler recorded as copied", proc)
        python.extend(pid for pid in descendants(proc.pid) | {proc.pid}
                      if b"azure.cli" in Path(f"/proc/{pid}/cmdline").read_bytes())
        assert len(python) == 1
        os.kill(python[0], 9)
    wd = pair.tmp / "killed"
    fault_while_paced_loads(pair, "killed", "stream", kill_9)
    wait_for(lambda: not sessions(pair.target, "backend_type = 'client backend'"), "the copy sessions to end",
             timeout=15)
    manifest = json.loads((wd / "migration.json").read_text())
    assert manifest["status"] == "running" and manifest["pid"] == python[0]
    # Resumed table by table: the database and its tables stay, filler (finished) is not copied again, the
    # half-loaded paced table is emptied and copied again.
    db = resumed_and_equal(pair, wd)["databases"][0]
    assert {"create", "restore-schemas", "restore-pre"} <= set(db["resumedSteps"]), db
    assert db["copy"]["tablesResumed"] == 1 and [t["name"] for t in db["copy"]["tables"]] == ["public.paced"]


def tables_done(work_dir):
    try:
        manifest = json.loads((work_dir / "migration.json").read_text())
    except (OSError, ValueError):
        return []
    return manifest.get("tasks", {}).get(f"{DB}/copy", {}).get("tablesDone", [])


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small filesystem needs root")
def test_a_full_work_dir_fails_the_step_and_resume_finishes(pair):
    pair.fresh_target()
    wd = pair.tmp / "small-disk"
    wd.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0700", "tmpfs", str(wd)], check=True, timeout=30)
    try:
        # The check before the run refuses a disk this small; here the disk fills up during the run (as when
        # something else writes to it), so the check is skipped.
        proc = pair.run(wd, "--method", "plain", "--reuse-work-dir", "--skip-check")
        assert proc.stdout, proc.stderr
        db = failed_database(proc, "transfer")
        assert "No space left on device" in db["error"] and f"{DB}.sql" in db["error"], db["error"]
        assert json.loads((wd / "migration.json").read_text())["status"] == "failed"
        subprocess.run(["mount", "-o", "remount,size=64m", str(wd)], check=True, timeout=30)
        resumed_and_equal(pair, wd)
    finally:
        subprocess.run(["umount", "-l", str(wd)], check=False, timeout=30)


@pytest.mark.parametrize("method", ["directory", "stream"])
def test_a_lock_nobody_releases_ends_the_dump_after_the_timeout(pair, method):
    pair.fresh_target()
    locker = pair.source.connect(DB)
    locker.execute("BEGIN; LOCK TABLE public.paced IN ACCESS EXCLUSIVE MODE")
    try:
        started = time.monotonic()
        proc = pair.run(pair.tmp / f"locked-{method}", "--method", method, "--timeout", "3")
        took = time.monotonic() - started
    finally:
        locker.close()
    # stream: listing the tables to copy, in the snapshot, is what meets the lock first
    db = failed_database(proc, "dump" if method == "directory" else "list-tables")
    assert "lock" in db["error"].lower(), db["error"]
    assert took < 60, took   # not the default 600 s


def descendants(pid):
    children, frontier = set(), [pid]
    while frontier:
        parent = frontier.pop()
        kids = []
        for task in Path(f"/proc/{parent}/task").glob("*"):  # every thread's children: workers are threads
            try:
                kids += (task / "children").read_text().split()
            except OSError:
                continue
        for kid in map(int, kids):
            if kid not in children:
                children.add(kid)
                frontier.append(kid)
    return children


def test_no_password_in_any_command_line_file_or_output(pair):
    """Every child's command line and environment sampled during a stream run: the passwords travel only in
    the environment. Nothing in the work dir holds them, and every file there is private."""
    pair.fresh_target()
    wd = pair.tmp / "secrets"
    proc = pair.popen(wd, "--method", "stream", "--verify")
    seen, lines, envs = set(), [], []

    def sample():
        while proc.poll() is None:
            for child in descendants(proc.pid) - seen:
                try:
                    cmdline = Path(f"/proc/{child}/cmdline").read_bytes().decode(errors="replace")
                    environ = Path(f"/proc/{child}/environ").read_bytes().decode(errors="replace")
                except OSError:
                    continue
                if "azure.cli" in cmdline:
                    continue  # az itself, or a child not yet exec'd: the user chose to type the password there
                if not cmdline or not environ:
                    continue  # it exited between the two reads (a zombie's environ reads empty): nothing to judge
                seen.add(child)
                lines.append(cmdline.replace("\0", " "))
                envs.append(environ)
            time.sleep(0.005)
    sampler = threading.Thread(target=sample)
    sampler.start()
    done = pair.finish(proc)
    sampler.join()
    assert done.returncode == 0, done.stderr
    assert any("pg_dump " in c for c in lines) and any("pg_restore " in c for c in lines), lines
    for secret in (pair.source.admin_password, pair.target.admin_password):
        assert not [c for c in lines if secret in c]
        assert any(f"PGPASSWORD={secret}" in e for e in envs)  # the sampler did see the children's secrets
    for path in [wd, *wd.rglob("*")]:
        mode = path.stat().st_mode & 0o777
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}"
        if path.is_file():
            data = path.read_bytes()
            assert not [s for s in pair.secrets if s.encode() in data], path


LIFETIME = 2   # seconds an Entra token lives in the test below; the paced copy alone takes longer


def test_entra_run_longer_than_its_token_lives(world):
    """A Single Server Entra login (user@server through the gateway, which checks tokens as Azure does) whose
    tokens live 2 s, in a run that lasts longer: every new connection gets a token that has not expired."""
    single, flex = world.single.pg, world.flexible.pg
    role_password = "entra-backend-" + os.urandom(6).hex()
    single.execute(f"CREATE ROLE entra_admin LOGIN PASSWORD '{role_password}' IN ROLE azure_pg_admin")
    single.execute("CREATE DATABASE entradb OWNER entra_admin")
    with single.connect("entradb") as conn:
        conn.execute("SET ROLE entra_admin")
        conn.execute(SOURCE_SQL.split("CREATE TABLE public.filler")[0])
    pace(flex, PACE_MS)
    world.gateway.entra_roles["entra_admin"] = role_password
    world.emulator.token_lifetime = LIFETIME
    issued = len(world.emulator.tokens)
    gw, started = world.gateway, time.monotonic()
    try:
        proc = world.az.run(
            "postgres", "dumprestore", "run", "-g", RESOURCE_GROUP, "--databases", "entradb", "--no-roles",
            "--no-owner",
            "--source-server", "single1", "--source-host", gw.host, "--source-port", str(gw.port),
            "--source-auth-type", "entra", "--source-admin-user", "entra_admin",
            "--target-server", "flex1", "--target-host", flex.host, "--target-port", str(flex.port),
            f"--target-admin-password={flex.admin_password}", "--pg-bin-dir", str(bindir(18)),
            "--work-dir", str(world.tmp / "entra-long"), "--verify", "-o", "json", check=False, timeout=600)
        took = time.monotonic() - started
    finally:
        world.emulator.token_lifetime = 3600
        del world.gateway.entra_roles["entra_admin"]
        pace(flex, 0)
        flex.drop_database("entradb")
        single.drop_database("entradb")
        single.execute("DROP ROLE entra_admin")
    assert proc.returncode == 0, proc.stderr
    assert took > 2 * LIFETIME and result_of(proc)["verify"]["status"] == "passed"   # two token lifetimes at least
    assert len(world.emulator.tokens) - issued >= 2   # renewed during the run
    assert "entra_admin@single1" not in gw.refused


def test_a_terminal_sees_the_copy_as_it_goes_and_a_log_only_lines(pair):
    """On a terminal, az's progress bar: the share copied, tables done / copying / waiting; a pipeline's log
    (no terminal) gets a line per table and no bar."""
    import pty
    import select
    pair.fresh_target()
    controller, terminal = pty.openpty()
    argv = [str(AZ), *pair.args(pair.tmp / "terminal", "--method", "stream"), *pair.password_args()]
    proc = subprocess.Popen(argv, env=pair.env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=terminal)
    os.close(terminal)
    seen = b""
    while True:
        ready = select.select([controller], [], [], 1)[0]
        try:
            chunk = os.read(controller, 65536) if ready else b""
        except OSError:  # the terminal's other end is closed: az has ended
            break
        seen += chunk
        if not chunk and proc.poll() is not None:
            break
    out, _ = proc.communicate(timeout=60)
    os.close(controller)
    assert proc.returncode == 0, seen
    text = seen.decode(errors="replace")
    assert "tables copied, " in text and "copying" in text and "[#" in text, text   # the bar, as the copy goes
    assert "copied public.paced: 150 rows" in text                               # and the line per table
    pair.no_secret_in(text + out.decode())

    logged = pair.run(pair.tmp / "log", "--method", "stream", "--if-exists", "drop", "--yes")
    assert logged.returncode == 0, logged.stderr
    assert "copied public.paced: 150 rows" in logged.stderr and "tables copied, " not in logged.stderr
    assert "[#" not in logged.stderr
