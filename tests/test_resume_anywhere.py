"""Resume from any instant: a run killed with SIGKILL (no chance to clean up) at many instants of its life,
for every method, then `run --resume` with the same work dir. Every resume must succeed with no "already
exists" error and leave the target equal to the source, for a database the run creates (appdb), for the
target's own `postgres` and for one `--if-exists reuse` names (reusedb); in the reused ones the user's own
table is still there, untouched. After a kill during a COPY or an index build, no session of ours works on
the target for more than a few seconds. And SIGTERM: the result is on stdout, says `interrupted` (as the
manifest does), and the run resumes.

The target is Flexible-shaped (PostgreSQL 16); a VM's PostgreSQL 15 is the source. The target loads one
table, builds one index and analyzes it slowly on purpose (a function that sleeps when the server sets
azext.pace_ms), so that each instant has a window."""
import json
import os
import re
import signal
import subprocess
import time
from contextlib import ExitStack

import pytest

from tests.infra.azcli import AZ
from tests.infra.pgbin import bindir
from tests.infra.pgserver import vm_and_flexible
from tests.migration_helpers import assert_same, az_python, result_of

CREATED, REUSED = "appdb", "reusedb"
DATABASES = [CREATED, REUSED, "postgres"]
PACE_MS, PACED_ROWS = 15, 80   # about 1.2 s for the paced COPY, the slow index and its ANALYZE on the target
ROLES_SQL = """
CREATE ROLE sweep_owner NOLOGIN;
CREATE ROLE sweep_reader LOGIN;
GRANT sweep_owner TO pgadmin;
"""
# In every source database: what a restore must recreate exactly, and the slow parts.
DB_SQL = f"""
CREATE FUNCTION public.pace(integer) RETURNS boolean LANGUAGE sql AS
$$ SELECT true FROM pg_sleep(coalesce(nullif(current_setting('azext.pace_ms', true), ''), '0')::float / 1000) $$;
CREATE FUNCTION public.slow_key(integer) RETURNS integer LANGUAGE sql IMMUTABLE AS
$$ SELECT $1 FROM pg_sleep(coalesce(nullif(current_setting('azext.pace_ms', true), ''), '0')::float / 1000) $$;
CREATE SCHEMA app AUTHORIZATION sweep_owner;
CREATE TYPE app.mood AS ENUM ('ok', 'meh');
CREATE TABLE public.paced (id integer PRIMARY KEY, note text, CHECK (public.pace(id)));
INSERT INTO public.paced SELECT g, 'row ' || g FROM generate_series(1, {PACED_ROWS}) g;
CREATE TABLE public.slow (id integer PRIMARY KEY, mood app.mood DEFAULT 'ok');
INSERT INTO public.slow SELECT g FROM generate_series(1, {PACED_ROWS}) g;
CREATE INDEX slow_key_idx ON public.slow (public.slow_key(id));
CREATE TABLE app.filler (id bigint PRIMARY KEY, body text);
INSERT INTO app.filler SELECT g, md5(g::text) FROM generate_series(1, 20000) g;
CREATE INDEX filler_body ON app.filler (body);
ALTER TABLE app.filler OWNER TO sweep_owner;
CREATE VIEW app.recent AS SELECT id, body FROM app.filler WHERE id > 19990;
CREATE SEQUENCE public.tickets START 42;
SELECT nextval('public.tickets');
GRANT SELECT ON app.filler TO sweep_reader;
SELECT lo_from_bytea(0, 'a large object');
"""
USERS_OWN = "CREATE TABLE public.users_own (id integer PRIMARY KEY, note text); " \
            "INSERT INTO public.users_own VALUES (1, 'mine'), (2, 'also mine')"


class Sweep:
    def __init__(self, world, source, target, tmp):
        self.world, self.source, self.target, self.tmp = world, source, target, tmp

    def args(self, work_dir, method, *extra):
        s, t = self.source, self.target
        return ["postgres", "dumprestore", "run", "--databases", *DATABASES, "--if-exists", "reuse", "--method", method,
                "--jobs", "2", "--work-dir", str(work_dir), "--source-host", s.host, "--source-port", str(s.port),
                "--source-admin-user", s.admin, "--target-host", t.host, "--target-port", str(t.port),
                "--target-admin-user", t.admin, "--pg-bin-dir", str(bindir(18)), "-o", "json", *extra]

    def popen(self, work_dir, method, *extra):
        argv = [str(AZ), *self.args(work_dir, method, *extra), "--source-admin-password", self.source.admin_password,
                "--target-admin-password", self.target.admin_password]
        return subprocess.Popen(argv, env=self.world.az.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, stdin=subprocess.DEVNULL)

    def fresh_target(self):
        """The target as a user has it before the migration: no appdb, a reusedb and a postgres that each hold a
        table of the user's own, none of the source's roles."""
        tgt = self.target
        for name in (CREATED, REUSED):
            tgt.drop_database(name)
        with tgt.connect("template1") as conn:
            conn.execute("DROP DATABASE postgres WITH (FORCE)")
            conn.execute("CREATE DATABASE postgres OWNER azure_pg_admin")  # as Flexible's: its admin may create
            conn.execute(f"CREATE DATABASE {REUSED} OWNER {tgt.admin}")
        for name in ("postgres", REUSED):
            with tgt.connect(name, superuser=False) as conn:
                conn.execute(USERS_OWN)
        for role in ("sweep_owner", "sweep_reader"):
            tgt.execute(f"DROP ROLE IF EXISTS {role}")

    def our_sessions(self, servers=None):
        """Sessions of the run's logins (not the harness's superuser) on the target, or on `servers`."""
        return [row for pg in servers or [self.target] for row in pg.execute(
            "SELECT pid, application_name, left(query, 60) FROM pg_stat_activity WHERE backend_type = 'client backend' "
            "AND pid <> pg_backend_pid() AND usename <> %s", (pg.bootstrap,))]


@pytest.fixture(scope="module")
def sweep(world, tmp_path_factory):
    with ExitStack() as stack:
        source, target = vm_and_flexible(stack, "sweep", world.certs)
        source.execute(ROLES_SQL + f"ALTER DATABASE postgres OWNER TO {source.admin};")  # a VM's admin owns it
        for name in (CREATED, REUSED):
            with source.connect(superuser=False) as conn:
                conn.execute(f"CREATE DATABASE {name}")
        with source.connect(CREATED, superuser=False) as conn:
            conn.execute(f"ALTER DATABASE {CREATED} SET work_mem = '8MB'; COMMENT ON DATABASE {CREATED} IS 'swept'")
        for name in DATABASES:
            with source.connect(name, superuser=False) as conn:
                conn.execute(DB_SQL)
        with (target.datadir / "postgresql.conf").open("a") as conf:
            conf.write(f"azext.pace_ms = {PACE_MS}\n")
        target.execute("SELECT pg_reload_conf()")
        yield Sweep(world, source, target, tmp_path_factory.mktemp("sweep"))


def task_running(step_id):
    def seen(sweep, wd):
        try:
            tasks = json.loads((wd / "migration.json").read_text()).get("tasks", {})
        except (OSError, ValueError):
            return False
        return tasks.get(step_id, {}).get("status") == "running"
    return seen


def target_query(pattern):
    def seen(sweep, _wd):
        return any(re.search(pattern, q or "") for _, _, q in sweep.our_sessions())
    return seen


COPY_PACED = target_query(r'^COPY "?public"?\."?paced')
INDEX_BUILD = target_query(r"CREATE INDEX slow_key_idx")
FIRST = {"stream": "dump-schema", "directory": "dump", "plain": "transfer"}
# (label, when to kill): spread over the whole run; the three databases run side by side, so each instant
# also lands somewhere in the others.
INSTANTS = {method: [
    ("roles", task_running("roles-restore")),
    ("dump", task_running(f"{CREATED}/{FIRST[method]}")),
    ("create", task_running(f"{CREATED}/create")),
    ("reused-first-write", task_running(f"{REUSED}/{'transfer' if method == 'plain' else 'footprint'}")),
    *([("schema", task_running(f"{REUSED}/restore-{'pre' if method == 'stream' else 'schemas'}"))]
      if method != "plain" else []),
    ("copy", COPY_PACED),
    ("index-build", INDEX_BUILD),
    ("post-data", task_running(f"postgres/{'analyze' if method == 'plain' else 'restore'}")),
    ("analyze", task_running(f"{CREATED}/analyze")),
    ("properties", task_running(f"{CREATED}/properties"))] for method in ("stream", "directory", "plain")}


KILLED = {}   # method -> the instants at which a case really killed its run (the run can end before one comes)


def _kill_when(sweep, proc, wd, seen, sig=signal.SIGKILL, timeout=120):
    deadline = time.monotonic() + timeout
    while not seen(sweep, wd):
        if proc.poll() is not None:
            return None   # the run ended first: this instant was too short to catch; the resume still runs
        assert time.monotonic() < deadline, "the instant never came"
        time.sleep(0.02)
    python = az_python(proc)
    os.kill(python, sig)
    return python


def _no_session_of_ours_for_long(sweep, seconds=6):
    """Neither server still works for a process that is gone (14+: client_connection_check_interval)."""
    servers = [sweep.source, sweep.target]
    deadline = time.monotonic() + seconds
    while sweep.our_sessions(servers):
        assert time.monotonic() < deadline, f"our sessions still work: {sweep.our_sessions(servers)}"
        time.sleep(0.2)


def _resume_and_compare(sweep, wd, method):
    proc = sweep.world.az.run(*sweep.args(wd, method, "--resume"), "--source-admin-password",
                              sweep.source.admin_password, "--target-admin-password", sweep.target.admin_password,
                              check=False, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = result_of(proc)
    assert result["status"] == "succeeded" and result["roles"]["status"] in ("succeeded", "skipped")
    assert all(d["status"] == "succeeded" for d in result["databases"]), result["databases"]
    # What is shown is what is true: 18's pg_restore meets settings a 16 target lacks, harmless, never "FAILED".
    assert "FAILED" not in proc.stderr, proc.stderr[-2000:]
    for log in wd.glob("*.log"):
        assert "already exists" not in log.read_text(errors="replace"), (log.name, log.read_text()[-2000:])
    for name in DATABASES:
        if name != CREATED:  # the user's own table, untouched; then left out of the comparison
            assert sweep.target.execute("SELECT id, note FROM public.users_own ORDER BY id", dbname=name) == \
                [(1, "mine"), (2, "also mine")]
            sweep.target.execute("DROP TABLE public.users_own", dbname=name)
        assert_same(sweep.source, sweep.target, name)
    return result


@pytest.mark.parametrize("method,label", [(m, label) for m, instants in INSTANTS.items() for label, _ in instants])
def test_killed_at_any_instant_resumes_to_an_equal_target(sweep, method, label):
    seen = dict(INSTANTS[method])[label]
    sweep.fresh_target()
    wd = sweep.tmp / f"{method}-{label}"
    proc = sweep.popen(wd, method)
    try:
        killed = _kill_when(sweep, proc, wd, seen)
    finally:
        out, err = proc.communicate(timeout=300)
    if killed is not None:
        KILLED.setdefault(method, set()).add(label)
        assert proc.returncode != 0, err[-2000:]
        if label in ("copy", "index-build"):
            _no_session_of_ours_for_long(sweep)
        manifest = json.loads((wd / "migration.json").read_text())
        assert manifest["status"] == "running" and manifest["pid"] == killed  # as a kill -9 leaves it
    else:
        assert proc.returncode == 0, err[-2000:]
    _resume_and_compare(sweep, wd, method)


def test_sigterm_says_interrupted_on_stdout_and_in_the_manifest_and_resumes(sweep):
    sweep.fresh_target()
    wd = sweep.tmp / "sigterm"
    proc = sweep.popen(wd, "stream")
    try:
        assert _kill_when(sweep, proc, wd, INDEX_BUILD, sig=signal.SIGTERM)
    finally:
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    result = json.loads(out)
    manifest = json.loads((wd / "migration.json").read_text())
    assert result["status"] == "interrupted" and manifest["status"] == "interrupted"
    assert manifest["result"] == result   # one object, at every exit
    assert result["interrupted"]["signal"] == "SIGTERM" and result["interrupted"]["steps"]
    statuses = {d["name"]: d["status"] for d in result["databases"]}
    assert "interrupted" in statuses.values() and "running" not in statuses.values(), statuses
    assert all(t["status"] != "running" for t in manifest["tasks"].values()), manifest["tasks"]
    assert "Interrupted by SIGTERM" in err and "--resume" in err
    _no_session_of_ours_for_long(sweep)
    _resume_and_compare(sweep, wd, "stream")


def test_the_sweep_really_killed_at_eight_instants_or_more_per_method(request):
    """A sweep whose runs all ended before their instant came would resume nothing and prove nothing."""
    sweep_name = "test_killed_at_any_instant_resumes_to_an_equal_target"
    cases = [i for i in request.session.items if i.originalname == sweep_name]
    if len(cases) < sum(len(v) for v in INSTANTS.values()):
        pytest.skip("only part of the sweep ran")
    assert all(len(KILLED.get(m, ())) >= 8 for m in INSTANTS), KILLED
