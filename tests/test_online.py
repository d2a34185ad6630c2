"""run --online, cutover and cancel with real servers under load: a PostgreSQL 15 and a 16 source with
wal_level = logical (their admin has REPLICATION, as Flexible Server's does) and a Flexible-shaped 16 target
whose admin may subscribe. A writer inserts, updates and deletes across several tables (one with REPLICA
IDENTITY FULL and no key, TOASTed values, a partitioned table, sequences in use) from before the copy starts
until the cutover; afterwards every table of the target equals the source's by checksum, and its sequences
too, and nothing the run made is left on either server."""
import itertools
import json
import os
import random
import signal
import subprocess
import threading
import time
from contextlib import ExitStack

import psycopg
import pytest

from tests.infra.azcli import AZ
from tests.infra.locales import FLEXIBLE_LOCALE
from tests.infra.pgbin import bindir
from tests.infra.pgserver import PgServer, flexible_server
from tests.migration_helpers import assert_same, az_python, table_counts

DB = "shopdb"
SCHEMA = """
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, notes text);
CREATE TABLE orders (id bigserial PRIMARY KEY, customer int REFERENCES customers, amount numeric(10,2),
                     at timestamptz DEFAULT now());
CREATE TABLE history (at timestamptz, what text);
ALTER TABLE history REPLICA IDENTITY FULL;                   -- no key: whole rows identify it
CREATE TABLE events (id bigint, day date, kind text, PRIMARY KEY (id, day)) PARTITION BY RANGE (day);
CREATE TABLE events_a PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2026-07-01');
CREATE TABLE events_b PARTITION OF events FOR VALUES FROM ('2026-07-01') TO ('2027-01-01');
CREATE SEQUENCE tickets;
INSERT INTO customers (name, notes) SELECT 'c' || g, repeat(md5(g::text), 200) FROM generate_series(1, 500) g;
INSERT INTO orders (customer, amount) SELECT 1 + g % 500, g % 97 FROM generate_series(1, 20000) g;
INSERT INTO history SELECT now(), 'h' || g FROM generate_series(1, 300) g;
INSERT INTO events SELECT g, DATE '2026-01-01' + g % 360, 'k' || g % 7 FROM generate_series(1, 5000) g;
"""


class Writer:
    """The application: writes to every kind of table the whole time, until stopped."""

    def __init__(self, pg):
        self.pg, self.stop, self.count, self.error = pg, threading.Event(), 0, None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.halt()

    def halt(self):
        self.stop.set()
        self.thread.join(timeout=60)
        assert self.error is None, self.error

    def _run(self):
        rnd = random.Random(7)
        try:
            with self.pg.connect(DB, superuser=False) as conn:
                conn.autocommit = True
                while not self.stop.is_set():
                    n = rnd.randint(1, 500)
                    with conn.transaction():
                        conn.execute("INSERT INTO orders (customer, amount) VALUES (%s, %s)", (n, rnd.randint(1, 999)))
                        conn.execute("UPDATE orders SET amount = amount + 1 WHERE id = %s", (rnd.randint(1, 20000),))
                        conn.execute("DELETE FROM orders WHERE id = %s", (rnd.randint(1, 20000),))
                        conn.execute("UPDATE customers SET notes = repeat(md5(random()::text), 300) WHERE id = %s",
                                     (n,))
                        conn.execute("INSERT INTO history VALUES (clock_timestamp(), 'w')")
                        conn.execute("DELETE FROM history WHERE ctid = (SELECT ctid FROM history LIMIT 1)")
                        conn.execute("INSERT INTO events VALUES (%s, DATE '2026-01-01' + %s, 'live')",
                                     (100000 + self.count, rnd.randint(0, 359)))
                        conn.execute("SELECT nextval('tickets')")
                    self.count += 1
                    time.sleep(0.005)
        except psycopg.Error as err:  # pragma: no cover - reported by halt()
            self.error = err


@pytest.fixture(scope="module")
def target(world):
    with ExitStack() as stack:
        pg = flexible_server("onltgt", 16, world.certs)
        pg.start()
        stack.callback(pg.stop)
        pg.execute(f"GRANT pg_create_subscription TO {pg.admin}")   # Flexible's admin may subscribe
        yield pg


def logical_source(stack, world, major, name):
    pg = PgServer(name=name, major=major, certs=world.certs, locale=FLEXIBLE_LOCALE,
                  conf={"wal_level": "logical", "max_replication_slots": "4", "max_wal_senders": "6"})
    pg.start()
    stack.callback(pg.stop)
    pg.execute(f"ALTER ROLE {pg.admin} REPLICATION")
    with pg.connect(superuser=False) as conn:
        conn.autocommit = True
        conn.execute(f"CREATE DATABASE {DB}")
    with pg.connect(DB, superuser=False) as conn:
        conn.execute(SCHEMA)
    return pg


def run_args(source, target, work_dir, *extra):
    return ["postgres", "dumprestore", "run", "--databases", DB, "--no-roles", "--work-dir", str(work_dir),
            "--source-host", source.host, "--source-port", str(source.port), "--source-admin-user", source.admin,
            "--source-admin-password", source.admin_password, "--target-host", target.host, "--target-port",
            str(target.port), "--target-admin-user", target.admin, "--target-admin-password", target.admin_password,
            "--pg-bin-dir", str(bindir(18)), "-o", "json", *extra]


def end_args(verb, source, target, work_dir, *extra):
    return ["postgres", "dumprestore", verb, "--work-dir", str(work_dir), *extra,
            "--source-host", source.host, "--source-port", str(source.port), "--source-admin-user", source.admin,
            "--source-admin-password", source.admin_password, "--target-host", target.host, "--target-port",
            str(target.port), "--target-admin-user", target.admin, "--target-admin-password", target.admin_password,
            "-o", "json"]


def nothing_left(source, target):
    assert source.execute("SELECT slot_name FROM pg_replication_slots") == []
    assert source.execute("SELECT pubname FROM pg_publication", dbname=DB) == []
    assert source.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE 'azext_pgdump%'") == []
    assert source.execute("SELECT nspname FROM pg_namespace WHERE nspname = 'azext_pgdump'", dbname=DB) == []
    assert target.execute("SELECT subname FROM pg_subscription") == []
    assert target.execute("SELECT nspname FROM pg_namespace WHERE nspname = 'azext_pgdump'", dbname=DB) == []


@pytest.mark.parametrize("major", [15, 16])
def test_online_under_load_then_cutover_loses_nothing(world, target, tmp_path, major):
    with ExitStack() as stack:
        source = logical_source(stack, world, major, f"onl{major}")
        target.drop_database(DB)
        with Writer(source) as writer:
            time.sleep(0.5)
            proc = world.az.run(*run_args(source, target, tmp_path / "wd", "--online"), check=False, timeout=600)
            assert proc.returncode == 0, proc.stderr
            result = json.loads(proc.stdout)
            db = result["databases"][0]
            assert db["online"]["status"] == "following" and db["online"]["lag"]["seconds"] >= 0
            assert "run `az postgres dumprestore cutover`" in proc.stderr
            # 16 sources get a login of the run's own; before 16 only a superuser may make one with REPLICATION
            assert (db["online"]["role"] is not None) == (major >= 16)
            written = writer.count
            time.sleep(2)   # the target follows while the application keeps writing
            assert writer.count > written
        cut = world.az.run(*end_args("cutover", source, target, tmp_path / "wd"), check=False, timeout=600)
        assert cut.returncode == 0, cut.stderr
        out = json.loads(cut.stdout)
        entry = out["databases"][0]
        assert out["status"] == "succeeded" and entry["verify"]["status"] == "passed", entry
        assert entry["sequences"] >= 3   # the serials in use and tickets
        assert source.execute("SELECT last_value FROM tickets", dbname=DB) == \
            target.execute("SELECT last_value FROM tickets", dbname=DB)
        assert_same(source, target, DB)
        nothing_left(source, target)
        manifest = json.loads((tmp_path / "wd" / "migration.json").read_text())
        assert manifest["result"]["databases"][0]["online"]["status"] == "cut over"
        again = world.az.run(*end_args("cutover", source, target, tmp_path / "wd"), check=False)
        assert again.returncode != 0 and "No database" in again.stderr


def following(stack, world, target, tmp_path, name):
    """A 16 source whose database the target follows after `run --online` (no writer)."""
    source = logical_source(stack, world, 16, name)
    target.drop_database(DB)
    proc = world.az.run(*run_args(source, target, tmp_path / "wd", "--online"), check=False, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return source


def test_cancel_leaves_the_source_as_it_was(world, target, tmp_path):
    with ExitStack() as stack:
        source = following(stack, world, target, tmp_path, "onlcancel")
        assert source.execute("SELECT count(*) FROM pg_replication_slots")[0][0] == 1
        table = world.az.run(*end_args("cancel", source, target, tmp_path / "wd")[:-2], "-o", "table").stdout
        header, _, row = table.splitlines()[:3]
        assert header.split()[:4] == ["Database", "Status", "Caught", "up"] and row.split()[:2] == [DB, "cancelled"]
        manifest = json.loads((tmp_path / "wd" / "migration.json").read_text())
        assert manifest["result"]["databases"][0]["online"]["status"] == "cancelled"
        nothing_left(source, target)
        assert target.execute("SELECT count(*) FROM orders", dbname=DB) == \
            source.execute("SELECT count(*) FROM orders", dbname=DB)   # the copy stays


def test_cutover_refuses_while_the_schemas_differ(world, target, tmp_path):
    with ExitStack() as stack:
        source = following(stack, world, target, tmp_path, "onlddl")
        with source.connect(DB, superuser=False) as conn:
            conn.execute("ALTER TABLE history ADD COLUMN who text")   # DDL: not replicated
        refused = world.az.run(*end_args("cutover", source, target, tmp_path / "wd"), check=False)
        assert refused.returncode == 1 and "only on the source: public.history.who text" in refused.stderr
        assert target.execute("SELECT count(*) FROM pg_subscription")[0][0] == 1   # still following
        with target.connect(DB, superuser=False) as conn:
            conn.execute("ALTER TABLE history ADD COLUMN who text")   # what the user does, then cuts over
        done = world.az.run(*end_args("cutover", source, target, tmp_path / "wd"), check=False, timeout=600)
        assert done.returncode == 0, done.stderr
        nothing_left(source, target)


def _task(work_dir, step):
    try:
        return json.loads((work_dir / "migration.json").read_text())["tasks"].get(f"{DB}/{step}", {}).get("status")
    except (OSError, ValueError):
        return None


def _until(seen, proc, what, timeout=180):
    deadline = time.monotonic() + timeout
    while not seen():
        assert proc.poll() is None, f"the run ended before {what}: {proc.communicate()[1][-3000:]}"
        assert time.monotonic() < deadline, f"{what} never came"
        time.sleep(0.02)


def _rows(pg, table) -> bool:
    try:
        return pg.execute(f"SELECT EXISTS (SELECT FROM {table})", dbname=DB)[0][0]
    except psycopg.Error:   # the database or the table is not there yet
        return False


def _start(world, source, target, work_dir, *extra):
    argv = [str(AZ), *run_args(source, target, work_dir, "--online", *extra)]
    return subprocess.Popen(argv, env=world.az.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)


def _online_status(work_dir):
    try:
        return json.loads((work_dir / "migration.json").read_text())["result"]["databases"][0]["online"]["status"]
    except (OSError, ValueError, KeyError, IndexError):
        return None


def _kill(proc, sig=signal.SIGKILL):
    os.kill(az_python(proc), sig)
    return proc.communicate(timeout=120)


def _resume_then_cut_over(world, source, target, work_dir, writer):
    resumed = world.az.run(*run_args(source, target, work_dir, "--resume"), check=False, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    db = json.loads(resumed.stdout)["databases"][0]
    assert db["status"] == "succeeded" and db["online"]["status"] == "following", db
    written = writer.count
    time.sleep(1)
    assert writer.count > written   # the application never stopped
    writer.halt()
    cut = world.az.run(*end_args("cutover", source, target, work_dir), check=False, timeout=600)
    assert cut.returncode == 0, cut.stderr[-3000:]
    assert json.loads(cut.stdout)["databases"][0]["verify"]["status"] == "passed"
    assert_same(source, target, DB)
    nothing_left(source, target)
    return db


def test_killed_during_the_catch_up_resumes_from_the_same_slot(world, target, tmp_path):
    """SIGKILL while the target catches up (a session of the user's holds rows the subscription must update, so
    the catch-up is really under way): --resume copies nothing again and goes on from the same slot."""
    wd = tmp_path / "wd"
    with ExitStack() as stack:
        source = logical_source(stack, world, 16, "onlkill")
        target.drop_database(DB)
        with Writer(source) as writer:
            proc = _start(world, source, target, wd)
            stack.callback(proc.kill)
            _until(lambda: _rows(target, "customers"), proc, "the copy of customers", timeout=300)
            holder = target.connect(DB, autocommit=False)   # the row locks last until its rollback
            stack.callback(holder.close)
            holder.execute("SELECT id FROM customers FOR UPDATE")   # the writer updates customers every time
            _until(lambda: target.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                          "AND backend_type LIKE 'logical replication%'")[0][0] > 0,
                   proc, "the subscription waiting in its catch-up")
            assert _task(wd, "subscribe") == "running"
            slot = source.execute("SELECT slot_name FROM pg_replication_slots")
            _kill(proc)
            holder.rollback()
            db = _resume_then_cut_over(world, source, target, wd, writer)
        assert db["online"]["slot"] == slot[0][0]   # the same slot: nothing copied again, nothing applied twice
        assert "copy" in db["resumedSteps"] and "subscribe" not in db["resumedSteps"]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_stopped_before_the_copy_is_in_starts_the_database_again_with_a_new_slot(world, target, tmp_path, sig):
    """The slot's exported snapshot ends with the process that made it: a copy cut short cannot go on in it, so
    --resume removes that slot (and what came with it) and migrates the database again from a new one. A run
    that can still act (Ctrl-C) removes it itself: kept, it would hold the source's WAL for nothing."""
    wd = tmp_path / "wd"
    with ExitStack() as stack:
        source = logical_source(stack, world, 16, f"onlstop{sig.value}")
        target.drop_database(DB)
        with Writer(source) as writer:
            proc = _start(world, source, target, wd)
            stack.callback(proc.kill)
            # Any instant from the schema dump (the slot exists) until the post-data restore has succeeded.
            _until(lambda: _task(wd, "dump-schema") is not None and _task(wd, "restore") in (None, "running"),
                   proc, "the copy")
            first = source.execute("SELECT slot_name FROM pg_replication_slots")[0][0]
            out, err = _kill(proc, sig)
            if sig == signal.SIGINT:
                assert proc.returncode == 130, err[-3000:]
                assert source.execute("SELECT slot_name FROM pg_replication_slots") == []
                assert source.execute("SELECT pubname FROM pg_publication", dbname=DB) == []
                assert json.loads(out)["databases"][0]["online"]["status"] == "stopped"
            db = _resume_then_cut_over(world, source, target, wd, writer)
        assert db["online"]["slot"] != first and "copy" not in db.get("resumedSteps", [])


def test_wait_for_cutover_reports_the_lag_until_another_shell_cuts_over(world, target, tmp_path):
    wd = tmp_path / "wd"
    with ExitStack() as stack:
        source = logical_source(stack, world, 16, "onlwait")
        target.drop_database(DB)
        with Writer(source):
            proc = _start(world, source, target, wd, "--wait-for-cutover")
            stack.callback(proc.kill)
            _until(lambda: _online_status(wd) == "following", proc, "the target following")
            time.sleep(6)   # at least one look at the lag and the slot's WAL while waiting
        assert proc.poll() is None   # still waiting: following is not the end
        cut = world.az.run(*end_args("cutover", source, target, wd), check=False, timeout=600)
        assert cut.returncode == 0, cut.stderr[-3000:]
        out, err = proc.communicate(timeout=60)   # the waiting run sees the cutover within seconds
        assert proc.returncode == 0, err[-3000:]
        result = json.loads(out)
        assert result["status"] == "succeeded" and result["waitForCutover"]["waitedSeconds"] > 5
        assert result["databases"][0]["online"]["status"] == "cut over"
        assert "Waiting for the cutover" in err and "of WAL kept on the source" in err
        nothing_left(source, target)


def test_a_slot_over_max_slot_wal_stops_following_and_frees_the_source(world, target, tmp_path):
    """The target stops applying (a session of the user's holds rows the subscription must update) while the
    application writes: the WAL the slot keeps grows past --max-slot-wal, the run stops following and removes
    the slot, and says why; the target keeps what was copied."""
    wd = tmp_path / "wd"
    with ExitStack() as stack:
        source = logical_source(stack, world, 16, "onlcap")
        target.drop_database(DB)
        with Writer(source):
            proc = _start(world, source, target, wd, "--wait-for-cutover", "--max-slot-wal", "4MB")
            stack.callback(proc.kill)
            _until(lambda: _rows(target, "customers"), proc, "the copy of customers", timeout=300)
            holder = target.connect(DB, autocommit=False)
            stack.callback(holder.close)
            holder.execute("SELECT id FROM customers FOR UPDATE")
            out, err = proc.communicate(timeout=300)
            holder.rollback()
        assert proc.returncode == 1, err[-3000:]
        result = json.loads(out)
        db = result["databases"][0]
        assert result["status"] == "failed" and db["online"]["status"] == "stopped", db
        assert "more than the limit of 4.0 MB (--max-slot-wal)" in db["online"]["error"]
        assert "replication slot" in " ".join(db["online"]["removed"])
        assert "Stopping" in err
        nothing_left(source, target)
        assert target.execute("SELECT count(*) FROM orders", dbname=DB)[0][0] > 0   # the copy stays


# ----- cutover --block-writes -----------------------------------------------------------------------------------

APP_PASSWORD = "app-pw-2026"
# The application logs in as `app`, which owns nothing: the admin (the migration's login) owns the tables and
# granted it what it writes with; a column grant, a grant with GRANT OPTION and one to PUBLIC, each kind the
# block takes and gives back.
APP_GRANTS = f"""
CREATE ROLE app LOGIN PASSWORD '{APP_PASSWORD}';
CREATE ROLE clerk LOGIN PASSWORD '{APP_PASSWORD}';
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO app;
GRANT UPDATE (notes) ON customers TO clerk;
GRANT TRUNCATE ON history TO clerk WITH GRANT OPTION;
GRANT INSERT ON history TO PUBLIC;
"""
# Every grant on the database's tables and columns, as a set: what "given back exactly" compares.
ACL = """
SELECT c.relname, NULL, a.grantor::regrole::text, a.grantee::regrole::text, a.privilege_type, a.is_grantable
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a WHERE n.nspname = 'public'
UNION ALL
SELECT c.relname, t.attname, a.grantor::regrole::text, a.grantee::regrole::text, a.privilege_type, a.is_grantable
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute t ON t.attrelid = c.oid,
     aclexplode(t.attacl) a WHERE n.nspname = 'public'"""


def with_application(source):
    """The application's roles on the source (cluster-wide, made after the copy: the target does not need them)."""
    with source.connect(DB, superuser=False) as conn:
        conn.execute(APP_GRANTS)
    return acl(source)


def acl(source) -> set:
    """Less the run's own login's SELECT, which the cutover or cancel drops with it."""
    return {row for row in source.execute(ACL, dbname=DB) if not row[3].startswith("azext_pgdump")}


def app_may_insert(source) -> bool:
    return source.execute("SELECT has_table_privilege('app', 'public.orders', 'INSERT')", dbname=DB)[0][0]


class AppWriter:
    """The application as `app`: keeps writing; counts the transactions that committed and those refused for want
    of a privilege, and whether any committed after the first refusal."""

    def __init__(self, pg):
        self.pg, self.stop = pg, threading.Event()
        self.committed, self.denied, self.after_denied, self.error = 0, 0, 0, None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=60)

    def _run(self):
        rnd = random.Random(11)
        try:
            with psycopg.connect(**{**self.pg.conninfo(DB, False), "user": "app", "password": APP_PASSWORD},
                                 autocommit=True) as conn:
                while not self.stop.is_set():
                    self._one(conn, rnd)
                    time.sleep(0.005)
        except psycopg.Error as err:  # pragma: no cover - asserted by the test
            self.error = err

    def _one(self, conn, rnd):
        try:
            with conn.transaction():
                conn.execute("INSERT INTO orders (customer, amount) VALUES (%s, %s)", (rnd.randint(1, 500), 5))
                conn.execute("UPDATE customers SET name = name || '.' WHERE id = %s", (rnd.randint(1, 500),))
                conn.execute("DELETE FROM orders WHERE id = %s", (rnd.randint(1, 20000),))
                conn.execute("INSERT INTO events VALUES (%s, DATE '2026-03-01', 'app')", (500000 + self.committed,))
        except psycopg.errors.InsufficientPrivilege:
            self.denied += 1
            return
        self.committed += 1
        if self.denied:
            self.after_denied += 1


def test_block_writes_stops_the_application_then_cuts_over(world, target, tmp_path):
    with ExitStack() as stack:
        source = following(stack, world, target, tmp_path, "onlblock")
        before = with_application(source)
        with AppWriter(source) as app:
            time.sleep(1)
            assert app.committed > 0 and app.denied == 0, app.error
            cut = world.az.run(*end_args("cutover", source, target, tmp_path / "wd", "--block-writes"),
                               check=False, timeout=600)
            time.sleep(0.5)
        assert app.error is None, app.error
        assert cut.returncode == 0, cut.stderr
        entry = json.loads(cut.stdout)["databases"][0]
        assert entry["status"] == "passed" and entry["verify"]["status"] == "passed", entry
        assert app.denied > 0 and app.after_denied == 0   # refused from the block on, never let through again
        assert table_counts(target, DB) == table_counts(source, DB)
        nothing_left(source, target)
        block = entry["writeBlock"]
        assert block["status"] == "kept"
        taken = {(g["table"], g["column"], g["grantee"], g["privilege"]) for g in block["revoked"]}
        assert {("public.orders", None, "app", "INSERT"), ("public.events_a", None, "app", "UPDATE"),
                ("public.customers", "notes", "clerk", "UPDATE"), ("public.history", None, "clerk", "TRUNCATE"),
                ("public.history", None, None, "INSERT")} <= taken
        assert not any(g["privilege"] == "SELECT" for g in block["revoked"])
        still = {s["role"]: s["why"] for s in block["stillMayWrite"]}
        assert still[source.admin] == "owner, or member of the owner" and still[source.bootstrap] == "superuser"
        assert "app" not in still and "clerk" not in still
        assert not app_may_insert(source)   # the privileges stay taken after the cutover
        assert source.execute("SELECT has_table_privilege('app', 'public.orders', 'SELECT')", dbname=DB)[0][0]
        manifest = json.loads((tmp_path / "wd" / "migration.json").read_text())
        assert manifest["result"]["databases"][0]["online"]["writeBlock"]["status"] == "kept"
        with source.connect(DB, superuser=False) as conn:   # the statements the result gives put back every grant
            for statement in block["giveBack"]:
                conn.execute(statement)
        assert acl(source) == before


def test_block_writes_given_back_when_the_cutover_fails_or_is_killed(world, target, tmp_path):
    with ExitStack() as stack:
        source = following(stack, world, target, tmp_path, "onlunblock")
        before = with_application(source)
        target.execute("ALTER SUBSCRIPTION " + target.execute("SELECT subname FROM pg_subscription")[0][0] +
                       " DISABLE", dbname=DB)   # the target stops applying: no catch-up comes
        failed = world.az.run(*end_args("cutover", source, target, tmp_path / "wd", "--block-writes",
                                        "--catch-up-timeout", "3"), check=False, timeout=300)
        assert failed.returncode == 1 and "has not applied the source's last changes" in failed.stderr
        entry = json.loads(failed.stdout)["databases"][0]
        assert entry["writeBlock"]["status"] == "given back" and entry["writeBlock"]["notGivenBack"] == []
        assert acl(source) == before   # exactly as it was
        assert target.execute("SELECT count(*) FROM pg_subscription")[0][0] == 1   # still a following target

        killed = subprocess.Popen([str(AZ), *end_args("cutover", source, target, tmp_path / "wd", "--block-writes")],
                                  env=world.az.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while app_may_insert(source):
                assert time.monotonic() < deadline and killed.poll() is None
                time.sleep(0.2)
        finally:
            killed.kill()   # SIGKILL: no chance to give anything back
            killed.wait()
        assert acl(source) < before
        manifest = json.loads((tmp_path / "wd" / "migration.json").read_text())
        assert manifest["result"]["databases"][0]["online"]["writeBlock"]["status"] in ("revoking", "revoked")

        out = world.az.json(*end_args("cancel", source, target, tmp_path / "wd")[:-2])
        assert out["status"] == "succeeded" and out["databases"][0]["writeBlock"]["notGivenBack"] == []
        assert acl(source) == before
        nothing_left(source, target)


# ----- --replica-identity-full ----------------------------------------------------------------------------------

def _identity(pg, table="notes"):
    return pg.execute("SELECT relreplident::text FROM pg_class WHERE oid = %s::regclass", (table,), dbname=DB)[0][0]


def test_replica_identity_full_publishes_tables_without_a_key(world, target, tmp_path):
    """A table with no primary key: refused by the checks (published, the application's UPDATE and DELETE on it
    would fail); with --replica-identity-full it is published with REPLICA IDENTITY FULL, the application keeps
    updating and deleting in it while the target follows, and the cutover finds the target equal. `cancel` gives
    the source back the replica identity it had."""
    with ExitStack() as stack:
        source = logical_source(stack, world, 16, "onlfull")
        with source.connect(DB, superuser=False) as conn:
            conn.execute("CREATE TABLE notes (n int, what text); "
                         "INSERT INTO notes SELECT g, 'n' || g FROM generate_series(1, 2000) g")
        target.drop_database(DB)
        refused = world.az.run(*run_args(source, target, tmp_path / "no", "--online"), check=False, timeout=600)
        assert refused.returncode != 0 and f"online-replica-identity/{DB}" in refused.stderr
        assert "public.notes" in refused.stderr and "--replica-identity-full" in refused.stderr
        assert source.execute("SELECT pubname FROM pg_publication", dbname=DB) == [] and _identity(source) == "d"

        stop, errors = threading.Event(), []

        def application():
            with source.connect(DB, superuser=False) as conn:
                for i in itertools.count():
                    if stop.is_set():
                        return
                    try:
                        conn.execute("UPDATE notes SET what = what || 'u' WHERE n = %s", (1 + i % 2000,))
                        conn.execute("DELETE FROM notes WHERE n = %s", (2001 + i,))
                        conn.execute("INSERT INTO notes VALUES (%s, 'new')", (2002 + i,))
                    except psycopg.Error as err:   # pragma: no cover - asserted below
                        errors.append(err)
                        return
                    time.sleep(0.005)
        writer = threading.Thread(target=application, daemon=True)
        writer.start()
        proc = world.az.run(*run_args(source, target, tmp_path / "wd", "--online", "--replica-identity-full"),
                            check=False, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert _identity(source) == "f" and _identity(target) == "f"
        time.sleep(1)
        stop.set()
        writer.join(timeout=30)
        assert errors == []   # the application's UPDATE and DELETE never failed
        cut = world.az.run(*end_args("cutover", source, target, tmp_path / "wd"), check=False, timeout=600)
        assert cut.returncode == 0, cut.stderr[-3000:]
        entry = json.loads(cut.stdout)["databases"][0]
        assert entry["verify"]["status"] == "passed" and entry["replicaIdentityFull"] == ["public.notes"]
        assert_same(source, target, DB)
        nothing_left(source, target)

        target.drop_database(DB)
        source.execute("ALTER TABLE notes REPLICA IDENTITY DEFAULT", dbname=DB)
        proc = world.az.run(*run_args(source, target, tmp_path / "again", "--online", "--replica-identity-full"),
                            check=False, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert _identity(source) == "f"
        out = world.az.json(*end_args("cancel", source, target, tmp_path / "again")[:-2])
        assert "replica identity of public.notes" in out["databases"][0]["removed"]
        assert _identity(source) == "d"
        nothing_left(source, target)


def test_a_target_that_cannot_reach_the_source_fails_the_run_and_resumes_once_admitted(world, target, tmp_path):
    """The source admits this machine but not the target server (on Azure: the source's firewall lets in the
    client's address, which the run opened, not the target's outbound one). Here the source refuses the run's
    subscription login, as its firewall would refuse the target: the run must fail saying so, not report a
    target that "follows" with a growing lag; once admitted, --resume goes on from the same slot."""
    wd = tmp_path / "wd"
    with ExitStack() as stack:
        source = logical_source(stack, world, 16, "onlfw")
        hba = source.datadir / "pg_hba.conf"
        admitted = hba.read_text()
        hba.write_text(f"hostssl all /^azext_pgdump_ {source.host}/32 reject\n" + admitted)
        source.execute("SELECT pg_reload_conf()")
        target.drop_database(DB)
        proc = world.az.run(*run_args(source, target, wd, "--online"), check=False, timeout=600)
        assert proc.returncode == 1
        db = json.loads(proc.stdout)["databases"][0]
        assert db["status"] == "failed" and "rejects connection" in db["error"], db
        assert "must admit connections from the target server" in db["error"] and "--resume" in db["error"]
        hba.write_text(admitted)
        source.execute("SELECT pg_reload_conf()")
        resumed = world.az.run(*run_args(source, target, wd, "--resume"), check=False, timeout=600)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        again = json.loads(resumed.stdout)["databases"][0]
        assert again["online"]["status"] == "following" and again["online"]["slot"] == db["online"]["slot"]
        cut = world.az.run(*end_args("cutover", source, target, wd), check=False, timeout=600)
        assert cut.returncode == 0, cut.stderr[-3000:]
        nothing_left(source, target)


def test_two_databases_follow_and_cut_over_together(world, target, tmp_path):
    """Every database of a server at once, as users migrate them: one publication, slot and subscription each
    (the slots check counts them), both following while the application writes to one, one cutover for both."""
    wd = tmp_path / "wd"
    with ExitStack() as stack:
        source = logical_source(stack, world, 16, "onltwo")
        with source.connect(superuser=False) as conn:
            conn.autocommit = True
            conn.execute("CREATE DATABASE otherdb")
        with source.connect("otherdb", superuser=False) as conn:
            conn.execute("CREATE TABLE items (id int PRIMARY KEY, what text); "
                         "INSERT INTO items SELECT g, 'i' || g FROM generate_series(1, 1000) g")
        for name in (DB, "otherdb"):
            target.drop_database(name)
        args = [a for a in run_args(source, target, wd, "--online") if a != DB]
        args[args.index("--databases") + 1:args.index("--databases") + 1] = [DB, "otherdb"]
        with Writer(source):
            proc = world.az.run(*args, check=False, timeout=600)
            assert proc.returncode == 0, proc.stderr[-3000:]
            dbs = json.loads(proc.stdout)["databases"]
            assert {d["name"]: d["online"]["status"] for d in dbs} == {DB: "following", "otherdb": "following"}
            assert len({d["online"]["slot"] for d in dbs}) == 2
            source.execute("UPDATE items SET what = 'changed' WHERE id <= 10", dbname="otherdb")
            time.sleep(1)
        cut = world.az.run(*end_args("cutover", source, target, wd), check=False, timeout=600)
        assert cut.returncode == 0, cut.stderr[-3000:]
        out = json.loads(cut.stdout)
        assert [d["verify"]["status"] for d in out["databases"]] == ["passed", "passed"]
        assert target.execute("SELECT count(*) FROM items WHERE what = 'changed'", dbname="otherdb") == [(10,)]
        for name in (DB, "otherdb"):
            assert_same(source, target, name)
        nothing_left(source, target)
        assert source.execute("SELECT count(*) FROM pg_publication", dbname="otherdb") == [(0,)]
        target.drop_database("otherdb")


def test_an_offline_run_is_not_resumed_online(world, target, tmp_path):
    """Its tables were copied in no slot's snapshot: following from a new slot would miss what changed between."""
    wd = tmp_path / "wd"
    with ExitStack() as stack:
        source = logical_source(stack, world, 16, "onloff")
        target.drop_database(DB)
        offline = [a for a in run_args(source, target, wd) if a != "--online"]
        assert world.az.run(*offline, check=False, timeout=600).returncode == 0
        refused = world.az.run(*run_args(source, target, wd, "--resume", "--online"), check=False)
        assert refused.returncode != 0 and "was not online" in refused.stderr
        assert source.execute("SELECT slot_name FROM pg_replication_slots") == []
