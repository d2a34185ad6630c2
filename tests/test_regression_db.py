"""Databases nobody here wrote as migration sources (issue 17): PostgreSQL's own regression database, and
Chinook, a sample application database (tests/infra/sampledb.py), which checks clean and arrives equal.

A PostgreSQL 15 source (a plain host) gets what the regression scripts leave behind when the Azure-like
admin, not a superuser, runs them (tests/infra/regressload.py); a Flexible-shaped 18 is the target.

What it holds that a restore on 18 cannot create, as the admin:
- gtest_normal_child and gtest_normal_child2: generated columns whose inheritance parent's column is not
  generated (allowed before 16; "A child table column cannot be generated unless its parent column is");
- coll_icu_upgrade, an ICU collation, where the target is a build without ICU (the wheel's 18; Debian's
  has ICU);
- the populated materialized view sro_mv, whose function mv_action() names a table unqualified: 17+ refresh
  it with search_path = pg_catalog ("relation "sro_trojan_table" does not exist"). `check` warns of it
  (search-path-safety, with unwanted_grant_nofail, another such function an index predicate calls).
  Fixed, the REFRESH still fails, on any major: the view's query fires a deferred trigger, which a
  REFRESH refuses; the source's rows came from a REFRESH inside SET CONSTRAINTS ALL IMMEDIATE. No check
  names it (it would have to run the view's query).
Nothing else: with those fixed on the source, `run --method stream` brings the rest across equal.

A Single-Server-shaped 11 (azure_superuser, md5, a Windows locale) gets the same scripts, loaded at the same
time as the 15 (about 35-45 s each, together no longer than one). What it holds that 16 and 18 cannot create:
the postfix operator #%#, the aggregate first_el_agg_f8 over the old array_append(anyarray, anyelement), and
coll_icu_upgrade on a target without ICU; its table WITH OIDS arrives without the oid column (a warning).

Then every method (stream, directory, plain) from 11 and 15 to 16 and 18 (MATRIX; each run about 5-17 s,
check included) must bring the database across equal. The tests run in this file's order: some change a
source as a user would to get past what check named."""
import difflib
import json
import re
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import psycopg
import pytest
from psycopg import sql

from tests.infra.locales import FLEXIBLE_LOCALE
from tests.infra.pgbin import bindir
from tests.infra.pgserver import PgServer, flexible_server, single_server
from tests.infra.regressload import load_regression
from tests.infra.sampledb import load_chinook
from tests.infra.world import start_all
from tests.migration_helpers import facts, public_schema_privileges, same_spelling, schema_dump, without_view_bodies

DB = "regression"
CHINOOK = "chinook"
GENERATED_CHILDREN = {"gtest_normal_child", "gtest_normal_child2"}
OLD_BLOCKERS = {"postfix-operators": "public.#%# (bigint)", "polymorphics": "first_el_agg_f8(double precision)"}
MULTIRANGE_CASTS = "float8range AS float8multirange"  # one of the five CREATE TYPE ... AS RANGE makes itself


@pytest.fixture(scope="module")
def pair(world, tmp_path_factory):
    """A VM's 15 and a Single Server's 11 as sources, Flexible-shaped 18 and 16 as targets; each source loaded
    once (at the same time: each load is one psql after another) and moved to several targets by several
    methods."""
    tmp = tmp_path_factory.mktemp("regressdb")
    with ExitStack() as stack:
        source = PgServer(name="regsrc", major=15, certs=world.certs, locale=FLEXIBLE_LOCALE)
        old = single_server("regsrc11", 11, world.certs)
        target, target16 = flexible_server("regtgt", 18, world.certs), flexible_server("regtgt16", 16, world.certs)
        servers = (source, old, target, target16)
        start_all(stack, servers)
        with ThreadPoolExecutor(2) as pool:
            loads = [pool.submit(load_regression, pg, DB, log_dir=tmp / f"load{pg.major}") for pg in (source, old)]
        load, old_load = (f.result() for f in loads)
        pair = Pair(world, source, target, load, tmp)
        pair.old, pair.old_load, pair.target16 = old, old_load, target16
        with ThreadPoolExecutor(2) as pool:
            pair.chinook, pair.old_chinook = pool.map(lambda pg: load_chinook(pg, CHINOOK), (source, old))
        yield pair


class Pair:
    def __init__(self, world, source, target, load, tmp):
        self.world, self.source, self.target, self.load, self.tmp = world, source, target, load, tmp
        self.fixed = set()   # the sources whose blockers the tests dropped, as check told

    def az(self, verb, *extra, dbname=DB, source=None, target=None):
        s, t = source or self.source, target or self.target
        proc = self.world.az.run(
            "postgres", "dumprestore", verb, "--databases", dbname,
            "--source-host", s.host, "--source-port", str(s.port), "--source-admin-user", s.admin,
            "--target-host", t.host, "--target-port", str(t.port), "--target-admin-user", t.admin,
            "--pg-bin-dir", str(bindir(18)), "-o", "json", *extra,
            "--source-admin-password", s.admin_password, "--target-admin-password", t.admin_password,
            check=False, timeout=600)
        return proc, (json.loads(proc.stdout) if proc.stdout.strip() else {})

    def run(self, name, *extra, source=None, target=None, method="stream"):
        (target or self.target).drop_database(DB)
        return self.az("run", "--method", method, "--work-dir", str(self.tmp / name), *extra,
                       source=source, target=target)

    def server(self, major):
        return {15: self.source, 11: self.old, 18: self.target, 16: self.target16}[major]


def test_chinook_checks_clean_and_migrates_equal(pair):
    """The sample application database (tests/infra/sampledb.py): nothing to report, everything arrives."""
    assert sum(pair.chinook.values()) == 15607, pair.chinook
    proc, result = pair.az("check", dbname=CHINOOK)
    assert proc.returncode == 0 and result["status"] == "passed", [
        c for c in result.get("checks", []) if c["status"] != "pass"]
    # A check that finds nothing says so in the result (status pass, for -o table) and nowhere else.
    names = [c["name"] for c in result["checks"]]
    assert not said_on_stderr(proc.stderr, names), proc.stderr
    proc, result = pair.az("run", "--method", "stream", "--work-dir", str(pair.tmp / CHINOOK), dbname=CHINOOK)
    assert proc.returncode == 0 and result["status"] == "succeeded", proc.stderr[-3000:]
    assert not said_on_stderr(proc.stderr, names), proc.stderr
    assert_equal(pair.source, pair.target, pair.tmp, CHINOOK)


CHINOOK_MATRIX = [(s, t, m) for s in (11, 15) for t in (16, 18) for m in ("stream", "directory", "plain")
                  if (s, t, m) != (15, 18, "stream")]


@pytest.mark.parametrize("source_major,target_major,method", CHINOOK_MATRIX,
                         ids=[f"{s}to{t}-{m}" for s, t, m in CHINOOK_MATRIX])
def test_chinook_between_majors(pair, source_major, target_major, method):
    """The sample database from 11 and 15 to 16 and 18 by every method (15 -> 18 stream: the test above)."""
    assert pair.old_chinook == pair.chinook
    source, target = pair.server(source_major), pair.server(target_major)
    target.drop_database(CHINOOK)
    name = f"chinook-{source_major}to{target_major}-{method}"
    proc, result = pair.az("run", "--method", method, "--work-dir", str(pair.tmp / name), dbname=CHINOOK,
                           source=source, target=target)
    assert proc.returncode == 0 and result["status"] == "succeeded", proc.stderr[-3000:]
    assert_equal(source, target, pair.tmp / name, CHINOOK)


def test_the_load_leaves_a_rich_database(pair):
    """What the scripts left: the database pg_upgrade's test moves, less what needs a superuser."""
    assert not [s.name for s in pair.load.scripts if s.timed_out or s.crashed], pair.load.log_dir
    left = inventory(pair.source, DB)
    assert left["tables"] > 300 and left["partitioned"] > 20 and left["inheritance"] > 20, left
    assert left["views"] > 50 and left["rules"] > 10 and left["policies"] > 5, left
    assert left["domains"] > 10 and left["ranges"] > 3 and left["large_objects"] > 0, left
    assert left["roles"] > 5, left


def test_check_names_what_breaks_the_restore_and_nothing_else(pair):
    """No alarm for the casts a range type makes itself; the collation the target cannot create and the
    generated child columns a 16+ target refuses are named."""
    proc, result = pair.az("check")
    failed = [c for c in result["checks"] if c["status"] == "fail"]
    said = json.dumps(failed)
    assert MULTIRANGE_CASTS not in json.dumps(result["checks"]), said
    blockers = GENERATED_CHILDREN | (set() if has_icu(pair.target) else {"coll_icu_upgrade"})
    assert proc.returncode == 1 and all(name in said for name in blockers), said
    # What pg_dump cannot keep is said: children restored with another column order (a warning).
    order = next(c for c in result["checks"] if c["name"] == "source-column-order")
    assert order["status"] == "warn" and "public.b_star" in order["message"], order


def test_run_as_loaded_fails_loudly_on_what_check_names(pair):
    """Past check (--skip-check), the database as loaded does not migrate: the 18 target refuses
    gtest_normal_child(2) (generated column under a plain parent). The run must say so, not succeed."""
    # --skip-check: check rightly refuses the database as loaded; the run itself must show what really breaks.
    proc, result = pair.run("as-loaded", "--skip-check")
    assert proc.returncode == 1 and result["status"] == "failed", proc.stderr[-3000:]
    db = result["databases"][0]
    assert db["status"] == "failed" and "gtest_normal_child" in json.dumps(db), db.get("error")


def test_run_after_the_blockers_are_dropped(pair):
    """What a user does when told: drop what the target cannot create, and give the functions check's
    search-path-safety names the fix it gives; then every table's rows, the sequences, large objects,
    schema and roles arrive."""
    with pair.source.connect(DB, superuser=False) as conn:
        conn.execute("DROP TABLE gtest_normal_child, gtest_normal_child2")
        conn.execute("DROP COLLATION coll_icu_upgrade")
        for function in ("mv_action()", "unwanted_grant_nofail(int)"):
            conn.execute(f"ALTER FUNCTION public.{function} SET search_path = public, pg_catalog")
        # sro_mv was populated inside SET CONSTRAINTS ALL IMMEDIATE; the REFRESH pg_restore runs (on any major,
        # the source's own too) fails: "cannot fire deferred trigger within security-restricted operation".
        conn.execute("REFRESH MATERIALIZED VIEW public.sro_mv WITH NO DATA")
    proc, result = pair.run("fixed")   # with its checks: nothing left for them to refuse
    pair.fixed_run = proc
    pair.fixed.add(15)
    assert proc.returncode == 0 and result["status"] == "succeeded", proc.stderr[-3000:]
    assert_equal(pair.source, pair.target, pair.tmp)


def test_check_of_the_11_source_names_what_breaks(pair):
    """The same scripts run on a Single Server's 11 leave another database (no generated columns, no
    multiranges; a postfix operator and an aggregate over the old array_append, which 14 removed, and a table
    WITH OIDS). check names the blockers for a 16 and an 18 target (those two, and the ICU collation for a
    target built without ICU); the user drops them, as told, and gives the functions search-path-safety names
    their search_path."""
    for major in (16, 18):
        target = pair.server(major)
        target.drop_database(DB)   # the 15 source's runs left theirs
        proc, result = pair.az("check", source=pair.old, target=target)
        failed = {c["name"]: c["message"] for c in result["checks"] if c["status"] == "fail"}
        blockers = dict(OLD_BLOCKERS, **({} if has_icu(target) else {"source-collations": "coll_icu_upgrade"}))
        assert proc.returncode == 1 and failed.keys() == blockers.keys(), failed
        assert all(blockers[name] in failed[name] for name in blockers), failed
        warned = {c["name"] for c in result["checks"] if c["status"] == "warn"}
        assert "source-with-oids" in warned, warned
    with pair.old.connect(DB, superuser=False) as conn:
        conn.execute("DROP OPERATOR public.#%# (bigint, NONE)")
        conn.execute("DROP AGGREGATE public.first_el_agg_f8(double precision)")
        conn.execute("DROP COLLATION coll_icu_upgrade")
        for function in ("mv_action()", "unwanted_grant_nofail(int)"):
            conn.execute(f"ALTER FUNCTION public.{function} SET search_path = public, pg_catalog")
        conn.execute("REFRESH MATERIALIZED VIEW public.sro_mv WITH NO DATA")   # see test_run_after_the_blockers...
    pair.fixed.add(11)


# Every method from each source to each target; 15 -> 18 stream is test_run_after_the_blockers_are_dropped.
MATRIX = [(s, t, m) for s in (11, 15) for t in (16, 18) for m in ("stream", "directory", "plain")
          if (s, t, m) != (15, 18, "stream")]


@pytest.mark.parametrize("source_major,target_major,method", MATRIX,
                         ids=[f"{s}to{t}-{m}" for s, t, m in MATRIX])
def test_every_method_between_majors(pair, source_major, target_major, method):
    """Once check's blockers are dropped: the loaded regression database arrives equal (rows by checksum,
    sequences, large objects, schema, roles) from 11 and 15, to 16 and 18, by every method, check included."""
    if source_major not in pair.fixed:
        pytest.skip(f"needs the {source_major} source's blockers dropped by the tests before")
    source, target = pair.server(source_major), pair.server(target_major)
    name = f"{source_major}to{target_major}-{method}"
    proc, result = pair.run(name, source=source, target=target, method=method)
    assert proc.returncode == 0 and result["status"] == "succeeded", proc.stderr[-3000:]
    assert_equal(source, target, pair.tmp / name)


@pytest.mark.xfail(strict=True, reason=(
    "issue 17: a child table whose own columns come before columns its parent got later (ALTER TABLE ... "
    "ADD COLUMN on the parent) is restored with the inherited columns first: pg_dump writes INHERITS. check warns "
    "(source-column-order); keeping the order is still to do, and this turns red the day it is kept"))
def test_column_order_survives(pair):
    migrated(pair)
    before, after = column_orders(pair.source, DB), column_orders(pair.target, DB)
    assert before == after, {t: (before[t], after.get(t)) for t in before if before[t] != after.get(t)}


def test_stale_views_are_named(pair):
    """A stale materialized view (mvtest_bb, not refreshed since its tables changed) arrives refreshed: the
    result names the views the restore refreshed, and says what that means."""
    migrated(pair)
    before, after = contents(pair.source, DB, "m"), contents(pair.target, DB, "m")
    stale = sorted(v for v in before if before[v] != after.get(v))
    assert stale == ["public.mvtest_bb"], stale  # what the scripts leave stale; a change here is news
    db = json.loads(pair.fixed_run.stdout)["databases"][0]
    refreshed = db["refreshedViews"]
    assert set(stale) <= set(refreshed["views"]) and "stale" in refreshed["note"], refreshed


AZ_PREVIEW = re.compile(r"^WARNING: Command group '.*' is in preview")  # az's own, on every command


def said_on_stderr(stderr: str, check_names) -> list:
    """Lines of stderr that are a warning, or speak of one of the checks (`run` logs a warned check as
    "WARNING: <name>: ...")."""
    return [line for line in stderr.splitlines() if not AZ_PREVIEW.search(line)
            and ("WARNING" in line or any(f"{name}:" in line or f"[{name}]" in line for name in check_names))]


def migrated(pair):
    if not hasattr(pair, "fixed_run"):
        pytest.skip("compares what test_run_after_the_blockers_are_dropped migrated")


def assert_equal(source, target, tmp, dbname=DB):
    # Before 12 a float's text is rounded to 15 digits, since 12 it is the shortest exact one: from an 11 source
    # both sides compare at 15 digits (what 12+ print with extra_float_digits = 0), every other value exactly.
    rounded = min(source.major, target.major) < 12
    theirs, ours = contents(source, dbname, rounded=rounded), contents(target, dbname, rounded=rounded)
    assert theirs.keys() == ours.keys(), sorted(theirs.keys() ^ ours.keys())
    assert theirs == ours, {t: (theirs[t], ours[t]) for t in theirs if theirs[t] != ours[t]}
    # Materialized views: the same ones, populated or not alike; their rows are test_stale_views_are_named's.
    views = {pg.name: {v: rows == "not populated" for v, rows in contents(pg, dbname, "m").items()}
             for pg in (source, target)}
    assert views[source.name] == views[target.name]
    assert facts(target, dbname) == facts(source, dbname)
    before, after = schema_dump(source, dbname), schema_dump(target, dbname)
    (tmp / f"{dbname}.source.sql").write_text(before)
    (tmp / f"{dbname}.target.sql").write_text(after)
    before, after = comparable(before), comparable(after)
    diff = list(difflib.unified_diff(before.splitlines(), after.splitlines(), "source", "target", lineterm=""))
    assert not diff, f"{tmp}/{dbname}.source.sql and .target.sql differ:\n" + "\n".join(diff[:80])
    assert public_schema_privileges(target, dbname) == public_schema_privileges(source, dbname)
    assert regress_roles(target) == regress_roles(source)


def regress_roles(pg) -> list:
    return pg.execute("SELECT rolname, rolcanlogin, rolinherit, rolcreaterole, rolcreatedb, rolconnlimit, "
                      "rolvaliduntil, ARRAY(SELECT b.rolname FROM pg_auth_members m JOIN pg_roles b "
                      "ON b.oid = m.roleid WHERE m.member = r.oid ORDER BY 1) "
                      "FROM pg_roles r WHERE rolname LIKE 'regress%' ORDER BY 1")


def comparable(dump: str) -> str:
    """A schema dump less what differs between a 15 and an 18 server for the same objects: view bodies
    (18 deparses without table qualifiers; a view dumped as its _RETURN rule too), 17's new MAINTAIN
    privilege, which an owner keeps (so the REVOKE before a GRANT is spelled differently), the order of
    the own columns of a child table (pg_dump's INHERITS: test_column_order_survives), and from_before_14."""
    dump = same_spelling(without_view_bodies(dump.replace("CREATE OR REPLACE VIEW", "CREATE VIEW")))
    dump = re.sub(r"^REVOKE [A-Z,]+ ON ", "REVOKE ... ON ", dump, flags=re.M)
    dump = re.sub(r"^(GRANT [A-Z,]*?)(,MAINTAIN\b|MAINTAIN,)", r"\1", dump, flags=re.M)
    dump = re.sub(r"(?m)^(CREATE TABLE .* \(\n)((?:    .*\n)*?)(\)\nINHERITS )",
                  lambda m: m[1] + "".join(sorted(c.rstrip(",") + "\n" for c in m[2].splitlines())) + m[3], dump)
    return from_before_14(dump)


def from_before_14(dump: str) -> str:
    """What a 14+ server writes for what an older one made: a range type's multirange (14 makes one for every
    range type; pg_dump names it), a function's COST as the float4 it is (11 prints 1.00000001e-07 for 1e-07)."""
    dump = re.sub(r",\n    multirange_type_name = [^,\n]+\n", "\n", dump)
    dump = re.sub(r"(?m)^    multirange_type_name = [^,\n]+,\n", "", dump)
    return re.sub(r"(?m)^(    LANGUAGE \w+ .*?COST )(\S+)", lambda m: f"{m[1]}{float(m[2]):.6g}", dump)


def contents(pg, dbname, kind="r", rounded=False) -> dict:
    """Each table's (kind r) or materialized view's (m) row count and checksum of its rows, each row as
    jsonb (keyed by column name: a column order that changed is column_orders' business); a
    materialized view made WITH NO DATA must stay unpopulated (reading it is an error). `rounded`: floats
    to 15 digits, as a server before 12 prints them."""
    out = {}
    with pg.connect(dbname, options="-c extra_float_digits=0" if rounded else None) as conn:
        relations = conn.execute(
            "SELECT n.nspname, c.relname, c.relispopulated FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = %s "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%' "
            "AND n.nspname NOT LIKE 'pg_temp%%'", (kind,)).fetchall()
        for schema, name, populated in relations:
            out[f"{schema}.{name}"] = conn.execute(sql.SQL(
                "SELECT count(*), md5(string_agg(r, '|' ORDER BY r COLLATE \"C\")) "
                "FROM (SELECT to_jsonb(t)::text r FROM {} t) s").format(sql.Identifier(schema, name))
            ).fetchone() if populated else "not populated"
    return out


def has_icu(pg) -> bool:
    """Whether the server can create an ICU collation, found by trying (16+ list an ICU `unicode` collation in
    every build, ICU or not: the catalog alone misled check once)."""
    with pg.connect() as conn:
        try:
            with conn.transaction(force_rollback=True):
                conn.execute("CREATE COLLATION icu_probe (provider = icu, locale = 'und')")
            return True
        except psycopg.errors.FeatureNotSupported:
            return False


def column_orders(pg, dbname) -> dict:
    with pg.connect(dbname) as conn:
        return dict(conn.execute(
            "SELECT c.oid::regclass::text, array_agg(a.attname ORDER BY a.attnum) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute a ON a.attrelid = c.oid "
            "WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema') GROUP BY 1").fetchall())


def inventory(pg, dbname) -> dict:
    """Counts of what a migration must carry, in the user's schemas."""
    user = "NOT IN ('pg_catalog', 'information_schema') AND {0} NOT LIKE 'pg_toast%' AND {0} NOT LIKE 'pg_temp%'"
    queries = {
        "tables": "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                  f"WHERE c.relkind IN ('r', 'p') AND n.nspname {user.format('n.nspname')}",
        "partitioned": "SELECT count(*) FROM pg_partitioned_table",
        "inheritance": "SELECT count(*) FROM pg_inherits",
        "views": "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                 f"WHERE c.relkind IN ('v', 'm') AND n.nspname {user.format('n.nspname')}",
        "rules": "SELECT count(*) FROM pg_rules WHERE schemaname <> 'pg_catalog'",
        "policies": "SELECT count(*) FROM pg_policy",
        "domains": "SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
                   f"WHERE t.typtype = 'd' AND n.nspname {user.format('n.nspname')}",
        "ranges": "SELECT count(*) FROM pg_range r JOIN pg_type t ON t.oid = r.rngtypid "
                  f"JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname {user.format('n.nspname')}",
        "large_objects": "SELECT count(*) FROM pg_largeobject_metadata",
        "roles": "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'regress%'",
    }
    with pg.connect(dbname) as conn:
        return {name: conn.execute(q).fetchone()[0] for name, q in queries.items()}
