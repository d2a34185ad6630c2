"""Real Single Servers (PostgreSQL 11 and 10, bootstrapped by azure_superuser, md5, Windows locales,
application-owned databases) migrate whole to Flexible 16 and 18 with both methods, owners and database
properties kept; check names what would stop a migration before it starts. Real servers, real az."""
import json

import pytest

from tests.infra.locales import FLEXIBLE_LOCALE, WINDOWS_LOCALE
from tests.infra.pgbin import bindir
from tests.infra.world import RESOURCE_GROUP
from tests.migration_helpers import (SECOND_DB, admin_database, assert_same, database_properties, result_of,
                                     write_pgpass)

SOURCES = {"single1": ["appdb", SECOND_DB, "postgres", "shop", "vault"], "single10": ["postgres", "shop"]}
APP_ROLES = {"app_owner", "app_reader", "shop_owner", "shop_writer", "shop_reader", "vault_owner"}


@pytest.fixture(scope="module")
def single(world, rich_source, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("single")
    servers = {"single1": (world.single, world.gateway), "single10": (world.single10, world.gateway10)}
    targets = {"flex1": world.flexible, "flex16": world.flexible16}
    entries = [(gw.host, gw.port, f"{s.pg.admin}@{name}", s.pg.admin_password) for name, (s, gw) in servers.items()]
    entries += [(t.pg.host, t.pg.port, t.pg.admin, t.pg.admin_password) for t in targets.values()]
    env = dict(world.az.env, PGPASSFILE=str(write_pgpass(tmp / "pgpass", entries)))
    secrets = [s.pg.admin_password for s, _ in servers.values()] + [t.pg.admin_password for t in targets.values()]

    class Single:
        def __init__(self):
            self.tmp, self.servers, self.targets = tmp, servers, targets

        def az(self, verb, source, target, *extra):
            server, gw = servers[source]
            flex = targets[target].pg
            proc = world.az.run("postgres", "dumprestore", verb, "-g", RESOURCE_GROUP,
                                "--source-server", source, "--source-host", gw.host, "--source-port", str(gw.port),
                                "--target-server", target, "--target-host", flex.host, "--target-port",
                                str(flex.port), "--pg-bin-dir", str(bindir(18)), *extra, "-o", "json",
                                env=env, check=False, timeout=600)
            for secret in secrets:
                assert secret not in proc.stdout and secret not in proc.stderr
            return proc
    return Single()


@pytest.mark.parametrize("source,target,method", [
    ("single1", "flex1", "plain"), ("single1", "flex1", "directory"),
    ("single1", "flex16", "plain"), ("single1", "flex16", "directory"),
    ("single1", "flex1", "stream"), ("single1", "flex16", "stream"),
    ("single10", "flex16", "directory"), ("single10", "flex1", "plain"), ("single10", "flex16", "stream")])
def test_every_database_migrates_with_owners_and_properties(single, source, target, method):
    src, tgt = single.servers[source][0].pg, single.targets[target].pg
    proc = single.az("run", source, target, "--method", method, "--if-exists", "drop", "--yes",
                     "--work-dir", str(single.tmp / f"{source}-{target}-{method}"))
    assert proc.returncode == 0, proc.stderr + proc.stdout
    result = result_of(proc)
    assert result["status"] == "succeeded" and result["sourceMajor"] == src.major
    assert result["targetMajor"] == tgt.major
    assert sorted(d["name"] for d in result["databases"]) == sorted(SOURCES[source])
    for db in result["databases"]:
        assert db["status"] == "succeeded", db
        assert db["errors"]["real"] == 0 and db["errors"]["unexplained"] == 0, db["errors"]
    assert result["roles"]["status"] == "succeeded" and result["roles"]["errors"]["real"] == 0
    roles = {r[0] for r in tgt.execute("SELECT rolname FROM pg_roles")}
    assert APP_ROLES & {r[0] for r in src.execute("SELECT rolname FROM pg_roles")} <= roles

    if method == "stream" and source == "single1":  # appdb: big tables psql -> psql, small ones relayed
        appdb = next(d for d in result["databases"] if d["name"] == "appdb")
        assert {t["via"] for t in appdb["copy"]["tables"]} == {"relay", "pipe"}
        # Built-in types go binary (events: bigint, text, jsonb, timestamptz); an enum, a domain or a composite
        # type of the database's own goes as text.
        formats = {t["name"]: t["format"] for t in appdb["copy"]["tables"]}
        assert formats["sales.events"] == "binary" and formats["sales.customer"] == "text"
        assert {formats[p] for p in ("sales.orders_2025", "sales.orders_2026")} == {"text"}
        assert appdb["copy"]["connections"] <= 2 * 2 and appdb["copy"]["failed"] is None
        assert all(t["seconds"] >= 0 and t["bytes"] >= 0 for t in appdb["copy"]["tables"])
        frozen = {t["name"]: t["frozen"] for t in appdb["copy"]["tables"]}
        assert frozen["sales.events"], frozen  # the login may empty it: loaded frozen, every page all-frozen
        tgt.execute("CREATE EXTENSION IF NOT EXISTS pg_visibility", dbname="appdb")
        try:
            for name in (n for n, f in frozen.items() if f):
                pages, all_frozen = tgt.execute(
                    "SELECT pg_relation_size(r) / 8192, (pg_visibility_map_summary(r)).all_frozen "
                    "FROM (SELECT format('%%I.%%I', %s::text, %s::text)::regclass AS r) t", name.split(".", 1),
                    dbname="appdb")[0]
                # COPY FREEZE marks the pages it fills from empty; a page a later batch of rows went on to is not
                # marked (its rows are frozen all the same). Without FREEZE no page is marked until a VACUUM.
                assert all_frozen > 0 or pages == 0, (name, pages, all_frozen)
        finally:
            tgt.execute("DROP EXTENSION pg_visibility", dbname="appdb")
    shop = next(d for d in result["databases"] if d["name"] == "shop")
    assert {"object": "SCHEMA public (owner azure_superuser)", "reason": "Azure service object"} in shop["leftOut"]
    assert shop["localeMapped"] == {WINDOWS_LOCALE: FLEXIBLE_LOCALE} and shop["owner"] == "shop_owner"
    for name in SOURCES[source]:
        if name == "postgres":
            continue
        assert_same(src, tgt, name)
        source_props, target_props = database_properties(src, name), database_properties(tgt, name)
        assert target_props == source_props, name
        assert tgt.execute("SELECT datcollate, datctype FROM pg_database WHERE datname = %s",
                           (name,))[0] == (FLEXIBLE_LOCALE, FLEXIBLE_LOCALE)
    assert database_properties(tgt, "shop")["owner"] == "shop_owner"
    assert database_properties(tgt, "shop")["comment"] == "The shop's data; owned by the application"


def test_no_owner_keeps_the_login_as_owner_and_says_so(world, single):
    proc = single.az("run", "single1", "flex16", "--databases", "shop", "--no-owner", "--if-exists", "drop",
                     "--yes", "--work-dir", str(single.tmp / "no-owner"))
    assert proc.returncode == 0, proc.stderr
    shop = result_of(proc)["databases"][0]
    assert shop["status"] == "succeeded" and shop["errors"]["real"] == 0
    assert shop["owner"] == "pgadmin" and "--no-owner" in shop["ownerNote"]
    assert database_properties(world.flexible16.pg, "shop")["owner"] == "pgadmin"
    owners = {r[0] for r in world.flexible16.pg.execute("SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class "
                                                        "WHERE relnamespace = 'shop'::regnamespace", dbname="shop")}
    assert owners == {"pgadmin"}


def test_locale_map_overrides_the_mapping(single):
    proc = single.az("run", "single1", "flex1", "--databases", "shop", "--dry-run", "--if-exists", "drop",
                     "--locale-map", f"{WINDOWS_LOCALE}=C.UTF-8", "--work-dir", str(single.tmp / "map"))
    assert proc.returncode == 0, proc.stderr
    plan = result_of(proc)
    create = next(s for s in plan["steps"] if s["name"] == "create")
    assert "--lc-collate=C.UTF-8" in create["argv"] and "--owner=shop_owner" in create["argv"]
    assert plan["notes"]["shop"]["localeMapped"] == {WINDOWS_LOCALE: "C.UTF-8"}
    bad = single.az("run", "single1", "flex1", "--databases", "shop", "--dry-run", "--locale-map", "nonsense")
    assert bad.returncode != 0 and "OLD=NEW" in bad.stderr


def test_check_names_the_grant_that_lets_pg_dump_read_everything(world, rich_source):
    checks = {c["name"]: c for c in world.vault_check["checks"]}
    readable = checks["source-readable"]
    assert readable["status"] == "fail" and "public.secrets" in readable["message"]
    assert 'GRANT "vault_owner" TO "pgadmin";' in readable["fix"]


def test_check_reports_locales_and_blockers(single):
    proc = single.az("check", "single1", "flex1", "--databases", "shop", "appdb", "--if-exists", "drop")
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert checks["collations"]["status"] == "warn" and FLEXIBLE_LOCALE in checks["collations"]["message"]
    assert checks["source-readable"]["status"] == "pass"
    for name in ("source-casts", "source-text-search", "source-languages", "source-with-oids", "source-tablespaces",
                 "source-collations", "source-superuser-owned"):
        assert checks[name]["status"] == "pass", checks[name]


def test_check_warns_of_unsafe_search_path_for_17_and_later(world, single):
    pg = world.single.pg
    # norm() calls clean() by its unqualified name, found through the session's search_path.
    admin_database(pg, "unsafe", "CREATE SCHEMA app; SET search_path = app, public; "
                   "CREATE FUNCTION clean(t text) RETURNS text LANGUAGE sql IMMUTABLE AS 'SELECT lower(t)'; "
                   "CREATE FUNCTION norm(t text) RETURNS text LANGUAGE sql IMMUTABLE AS 'SELECT clean(t)'; "
                   "CREATE TABLE t (v text); CREATE INDEX ON t (norm(v))")
    try:
        on18 = {c["name"]: c for c in json.loads(single.az("check", "single1", "flex1", "--databases",
                                                           "unsafe").stdout)["checks"]}
        on16 = {c["name"]: c for c in json.loads(single.az("check", "single1", "flex16", "--databases",
                                                           "unsafe").stdout)["checks"]}
    finally:
        pg.drop_database("unsafe")
    assert on18["search-path-safety"]["status"] == "warn" and "app.norm" in on18["search-path-safety"]["message"]
    assert "search_path" in on18["search-path-safety"]["fix"]
    assert on16["search-path-safety"]["status"] == "pass"


def test_stream_splits_big_tables_into_ranges(world, single):
    """A VM's PostgreSQL 15 (ctid ranges for a table without an integer key) and integer key ranges."""
    vm, flex = world.vm_pg, world.flexible16.pg
    admin_database(vm, "splitdb", "CREATE TABLE keyed (id int PRIMARY KEY, body text); "
                   "INSERT INTO keyed SELECT g, repeat('k', 100) FROM generate_series(1, 30000) g; "
                   "CREATE TABLE heap (body text, n int); "
                   "INSERT INTO heap SELECT repeat('h', 100), g FROM generate_series(1, 30000) g")
    try:
        proc = world.az.run("postgres", "dumprestore", "run", "-g", RESOURCE_GROUP, "--databases", "splitdb",
                            "--source-host", vm.host, "--source-port", str(vm.port), "--source-admin-user", vm.admin,
                            f"--source-admin-password={vm.admin_password}", "--target-server", "flex16",
                            "--target-host", flex.host, "--target-port", str(flex.port),
                            f"--target-admin-password={flex.admin_password}", "--method", "stream", "--jobs", "3",
                            "--split-tables-larger-than", "1MB", "--if-exists", "drop", "--yes", "--no-roles",
                            "--work-dir", str(single.tmp / "split"), "--pg-bin-dir", str(bindir(18)), "-o", "json",
                            check=False)
        assert proc.returncode == 0, proc.stderr
        tables = {t["name"]: t for t in result_of(proc)["databases"][0]["copy"]["tables"]}
        assert tables["public.keyed"]["parts"] == 3 and tables["public.heap"]["parts"] == 3
        assert tables["public.keyed"]["rows"] == tables["public.heap"]["rows"] == 30000
        assert_same(vm, flex, "splitdb")
    finally:
        vm.drop_database("splitdb")
        flex.drop_database("splitdb")
