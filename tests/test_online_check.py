"""check --online with real servers: what logical replication from a source to a target needs, each missing
piece named with its fix. A PostgreSQL 15 on a VM whose admin has REPLICATION (as Flexible Server's does), first
with the default wal_level, then with a logical one; a Flexible-shaped 16 target whose admin may subscribe (as
on Flexible, through pg_create_subscription); a Single Server source, which cannot publish."""
import json
from contextlib import ExitStack

import pytest

from tests.infra.locales import FLEXIBLE_LOCALE
from tests.infra.pgbin import bindir
from tests.infra.pgserver import PgServer, flexible_server
from tests.infra.world import RESOURCE_GROUP

DB = "onlinedb"
SCHEMA = """
CREATE TABLE accounts (id bigint PRIMARY KEY, balance numeric);
CREATE TABLE events (at timestamptz, what text);                 -- no primary key
CREATE TABLE audit (id int PRIMARY KEY, note text);
ALTER TABLE audit REPLICA IDENTITY NOTHING;
CREATE TABLE logs (line text);
ALTER TABLE logs REPLICA IDENTITY FULL;                          -- publishable: whole rows identify it
CREATE TABLE parts (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE parts_2026 PARTITION OF parts FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
SELECT lo_from_bytea(0, 'a large object');
"""


@pytest.fixture(scope="module")
def servers(world):
    with ExitStack() as stack:
        plain = PgServer(name="onlineplain", major=15, certs=world.certs, locale=FLEXIBLE_LOCALE)
        logical = PgServer(name="onlinelogical", major=15, certs=world.certs, locale=FLEXIBLE_LOCALE,
                           conf={"wal_level": "logical", "max_replication_slots": "4", "max_wal_senders": "4"})
        target = flexible_server("onlinetgt", 16, world.certs)
        for pg in (plain, logical, target):
            pg.start()
            stack.callback(pg.stop)
        for pg in (plain, logical):
            pg.execute(f"ALTER ROLE {pg.admin} REPLICATION")   # Flexible's admin has it
            with pg.connect(superuser=False) as conn:
                conn.autocommit = True
                conn.execute(f"CREATE DATABASE {DB}")
            with pg.connect(DB, superuser=False) as conn:
                conn.execute(SCHEMA)
            pg.execute("CREATE TABLE not_mine (id int PRIMARY KEY)", dbname=DB)   # the superuser's
        target.execute(f"GRANT pg_create_subscription TO {target.admin}")
        yield plain, logical, target


def online_check(world, source, target, *extra):
    proc = world.az.run("postgres", "dumprestore", "check", "--online", "--databases", DB, "--no-roles",
                        *source, "--target-host", target.host, "--target-port", str(target.port),
                        "--target-admin-user", target.admin, "--target-admin-password", target.admin_password,
                        "--pg-bin-dir", str(bindir(18)), "-o", "json", *extra, check=False)
    return proc, {c["name"]: c for c in json.loads(proc.stdout)["checks"] if c["name"].startswith("online-")}


def host_args(pg):
    return ["--source-host", pg.host, "--source-port", str(pg.port), "--source-admin-user", pg.admin,
            "--source-admin-password", pg.admin_password]


def test_each_missing_piece_is_named_with_its_fix(world, servers):
    plain, logical, target = servers
    proc, checks = online_check(world, host_args(plain), target)
    assert proc.returncode == 1
    assert checks["online-wal-level"]["status"] == "fail" and "wal_level = replica" in checks["online-wal-level"][
        "message"] and "ALTER SYSTEM SET wal_level = logical" in checks["online-wal-level"]["fix"]
    proc, checks = online_check(world, host_args(logical), target)
    assert proc.returncode == 1
    assert {n: c["status"] for n, c in checks.items()} == {
        "online-wal-level": "pass", "online-replication-role": "pass", "online-slots": "pass",
        f"online-replica-identity/{DB}": "fail", f"online-table-ownership/{DB}": "fail",
        f"online-large-objects/{DB}": "fail", "online-subscription": "pass"}
    identity = checks[f"online-replica-identity/{DB}"]
    assert "public.events, public.not_mine" not in identity["message"]   # not_mine has a primary key
    assert "public.audit, public.events" in identity["message"] and "logs" not in identity["message"]
    assert "parts" not in identity["message"] and "REPLICA IDENTITY FULL" in identity["fix"]
    assert "public.not_mine (owner postgres)" in checks[f"online-table-ownership/{DB}"]["message"]
    assert "1 large objects" in checks[f"online-large-objects/{DB}"]["message"]


def test_a_source_ready_to_publish_passes(world, servers):
    _, logical, target = servers
    logical.execute("DROP TABLE not_mine; SELECT lo_unlink(oid) FROM pg_largeobject_metadata", dbname=DB)
    with logical.connect(DB, superuser=False) as conn:
        conn.execute("ALTER TABLE events ADD PRIMARY KEY (at, what); ALTER TABLE audit REPLICA IDENTITY DEFAULT")
    proc, checks = online_check(world, host_args(logical), target)
    assert {c["status"] for c in checks.values()} == {"pass"}, checks
    assert f"online-tables/{DB}" in checks


def test_a_single_server_cannot_publish_and_a_target_login_may_need_to_subscribe(world, servers):
    _, logical, target = servers
    target.execute(f"REVOKE pg_create_subscription FROM {target.admin}")
    try:
        gw = world.gateway
        proc, checks = online_check(world, ["-g", RESOURCE_GROUP, "--source-server", "single1", "--source-host",
                                            gw.host, "--source-port", str(gw.port),
                                            f"--source-admin-password={world.single.pg.admin_password}"], target)
    finally:
        target.execute(f"GRANT pg_create_subscription TO {target.admin}")
    assert proc.returncode == 1
    assert checks["online-source"]["status"] == "fail" and "Single Server" in checks["online-source"]["message"]
    assert checks["online-subscription"]["status"] == "fail"
    assert "GRANT pg_create_subscription" in checks["online-subscription"]["fix"]
