"""check: fails for what would break a migration, passes on a good setup. Real servers, real az."""
import json
import subprocess

import pytest

from tests.infra.locales import FLEXIBLE_LOCALE
from tests.infra.pgbin import bindir
from tests.infra.world import RESOURCE_GROUP


@pytest.fixture(scope="module")
def chk(world):
    """chkdb on the Single Server uses pgcrypto; the Flexible target allow-lists it."""
    world.single.pg.execute("CREATE DATABASE chkdb OWNER pgadmin")
    world.single.pg.execute("CREATE EXTENSION pgcrypto", dbname="chkdb")  # as Azure did for the admin
    with world.single.pg.connect("chkdb", superuser=False) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
    allowed = world.flexible.parameters["azure.extensions"]
    world.flexible.parameters["azure.extensions"] = "pgcrypto,hstore"
    world.vm_pg.execute("CREATE ROLE weak LOGIN CREATEDB PASSWORD 'weak-pw-1'")
    yield world
    world.flexible.parameters["azure.extensions"] = allowed
    for pg in (world.single.pg, world.flexible.pg, world.vm_pg):
        pg.drop_database("chkdb")


def check(world, *extra, target="flexible", pg_bin=18):
    gw, flex, vm = world.gateway, world.flexible.pg, world.vm_pg
    if target in ("flexible", "flex16"):
        flex = world.flexible16.pg if target == "flex16" else flex
        tgt = ["--target-server", "flex1" if target == "flexible" else "flex16", "--target-host", flex.host,
               "--target-port", str(flex.port), f"--target-admin-password={flex.admin_password}"]
    else:
        tgt = ["--target-host", vm.host, "--target-port", str(vm.port), "--target-admin-user", "weak",
               "--target-admin-password=weak-pw-1"]
    proc = world.az.run("postgres", "dumprestore", "check", "-g", RESOURCE_GROUP, "--databases", "chkdb",
                        "--source-server", "single1", "--source-host", gw.host, "--source-port", str(gw.port),
                        f"--source-admin-password={world.single.pg.admin_password}", *tgt,
                        "--pg-bin-dir", str(bindir(pg_bin)), *extra, "-o", "json", check=False)
    result = json.loads(proc.stdout)
    return proc.returncode, {c["name"]: c for c in result["checks"]}, result


def test_good_setup_passes(chk):
    code, checks, result = check(chk)
    assert code == 0, [c for c in checks.values() if c["status"] != "pass"]
    assert result["status"] in ("passed", "warnings")
    assert not [c for c in checks.values() if c["status"] == "fail"]
    assert {"utilities", "source-connection", "target-connection", "target-createrole", "extensions-allow-list",
            "target-databases", "collations", "disk-space", "lock-headroom"} <= set(checks)


def test_too_old_utilities_fail(chk):
    code, checks, _ = check(chk, pg_bin=15)
    assert code == 1 and checks["utilities"]["status"] == "fail" and "18 or newer" in checks["utilities"]["message"]


def test_target_login_without_createrole_fails(chk):
    code, checks, _ = check(chk, target="vm", pg_bin=15)
    assert code == 1 and checks["target-createrole"]["status"] == "fail"
    assert checks["target-createdb"]["status"] == "pass"


def test_extension_not_allow_listed_fails_with_the_az_command(chk):
    chk.flexible.parameters["azure.extensions"] = "hstore"
    try:
        code, checks, _ = check(chk)
    finally:
        chk.flexible.parameters["azure.extensions"] = "pgcrypto,hstore"
    assert code == 1 and checks["extensions-allow-list"]["status"] == "fail"
    assert checks["extensions-allow-list"]["fix"] == (
        f"az postgres flexible-server parameter set -g {RESOURCE_GROUP} -s flex1 --name azure.extensions "
        "--value hstore,pgcrypto")


def test_extension_a_newer_major_removed_fails_with_its_fix(chk):
    """adminpack is in 11 and 16, and 17 removed it: named for the 18 target with its fix, not for the 16."""
    chk.single.pg.execute("CREATE EXTENSION adminpack", dbname="chkdb")
    try:
        code, checks, _ = check(chk)
        _, on16, _ = check(chk, target="flex16")
    finally:
        chk.single.pg.execute("DROP EXTENSION adminpack", dbname="chkdb")
    assert code == 1 and checks["extensions-available"]["status"] == "fail"
    removed = checks["extensions-removed"]
    assert removed["status"] == "fail" and "adminpack (removed in 17) in chkdb" in removed["message"], removed
    assert "DROP EXTENSION adminpack" in removed["fix"] and "--databases" in removed["fix"]
    assert on16["extensions-removed"]["status"] == "pass", on16["extensions-removed"]
    assert on16["extensions-available"]["status"] == "pass", on16["extensions-available"]


def test_granting_a_role_the_target_login_cannot_grant_fails_on_16_plus(chk):
    """Since 16 CREATEROLE grants only roles held WITH ADMIN OPTION: a source membership in a role the target
    already has (the admin login itself, a role someone else made there) fails the roles restore on 16 and 18
    ("permission denied to grant role"); the roles the restore creates itself are the admin's to grant."""
    source, targets = chk.single.pg, (chk.flexible.pg, chk.flexible16.pg)
    source.execute("CREATE ROLE chk_shared NOLOGIN; CREATE ROLE chk_app NOLOGIN; CREATE ROLE chk_own NOLOGIN; "
                   "GRANT chk_shared, pgadmin, chk_own TO chk_app")
    for target in targets:
        target.execute("CREATE ROLE chk_shared NOLOGIN")   # made there by someone else: no ADMIN OPTION for pgadmin
    try:
        results = {name: check(chk, target=name)[1]["target-role-grants"] for name in ("flexible", "flex16")}
        _, checks, _ = check(chk, "--no-roles")
    finally:
        source.execute("DROP ROLE chk_app, chk_own, chk_shared")
        for target in targets:
            target.execute("DROP ROLE chk_shared")
    for found in results.values():
        assert found["status"] == "fail", found
        assert "chk_shared to chk_app" in found["message"] and "pgadmin to chk_app" in found["message"], found
        assert "chk_own" not in found["message"], found      # created by the restore: the admin may grant it
        assert 'GRANT "chk_shared" TO "pgadmin" WITH ADMIN OPTION' in found["fix"] and "--no-roles" in found["fix"]
    assert checks["target-role-grants"]["status"] == "pass"   # no roles restored, nothing to grant
    code, checks, _ = check(chk)
    assert code == 0 and checks["target-role-grants"]["status"] == "pass"   # nothing left: nothing said


def test_existing_target_database_fails_unless_handled(chk):
    chk.flexible.pg.execute("CREATE DATABASE chkdb")
    try:
        code, checks, _ = check(chk)
        assert code == 1 and checks["target-databases"]["status"] == "fail"
        code, checks, _ = check(chk, "--if-exists", "drop")
        assert checks["target-databases"]["status"] == "pass"
    finally:
        chk.flexible.pg.execute("DROP DATABASE chkdb")


def test_too_little_disk_fails(chk, tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        code, checks, _ = check(chk, "--work-dir", str(small))
    finally:
        subprocess.run(["umount", str(small)], check=True)
    assert code == 1 and checks["disk-space"]["status"] == "fail" and "--work-dir" in checks["disk-space"]["fix"]


def test_refused_connection_is_a_failed_check_not_a_change(chk):
    chk.flexible.enforce_firewall = True
    chk.emulator.apply_firewall(chk.flexible)
    before = len(chk.emulator.requests)
    try:
        code, checks, _ = check(chk)
    finally:
        chk.flexible.enforce_firewall = False
        chk.emulator.apply_firewall(chk.flexible)
    assert code == 1 and checks["target-connection"]["status"] == "fail"
    assert "--firewall-rule auto" in checks["target-connection"]["fix"]
    assert not [r for r in chk.emulator.requests[before:] if r[0] in ("PUT", "DELETE")]


def test_run_checks_first_and_stops_before_touching_anything(chk, tmp_path):
    gw, vm = chk.gateway, chk.vm_pg
    proc = chk.az.run("postgres", "dumprestore", "run", "-g", RESOURCE_GROUP, "--databases", "chkdb",
                      "--source-server", "single1", "--source-host", gw.host, "--source-port", str(gw.port),
                      f"--source-admin-password={chk.single.pg.admin_password}",
                      "--target-host", vm.host, "--target-port", str(vm.port), "--target-admin-user", "weak",
                      "--target-admin-password=weak-pw-1", "--pg-bin-dir", str(bindir(15)),
                      "--work-dir", str(tmp_path / "wd"), check=False)
    assert proc.returncode != 0 and "[target-createrole]" in proc.stderr and "--no-roles" in proc.stderr
    assert not (tmp_path / "wd").exists()
    assert vm.execute("SELECT count(*) FROM pg_database WHERE datname = 'chkdb'")[0][0] == 0


def check_vm_source(world, database, target="flex1"):
    """check from the VM's PostgreSQL 15 (a source that can have ranges, multiranges and generated columns)."""
    vm, flex = world.vm_pg, {"flex1": world.flexible.pg, "flex16": world.flexible16.pg}[target]
    proc = world.az.run("postgres", "dumprestore", "check", "-g", RESOURCE_GROUP, "--databases", database,
                        "--source-host", vm.host, "--source-port", str(vm.port), "--source-admin-user", vm.admin,
                        f"--source-admin-password={vm.admin_password}", "--target-server", target,
                        "--target-host", flex.host, "--target-port", str(flex.port),
                        f"--target-admin-password={flex.admin_password}", "--pg-bin-dir", str(bindir(18)),
                        "-o", "json", check=False)
    result = json.loads(proc.stdout)
    return proc.returncode, {c["name"]: c for c in result["checks"]}


@pytest.fixture(scope="module")
def vm_databases(world):
    """What the server makes by itself is no user object: a range type's multirange casts, a table's row type.
    A collation the target can create (a libc one of a locale it has: the targets here have no ICU, and an ICU
    one is named, see test_regression_db) is no chore. A generated child column under a plain parent is a real
    blocker for a 16+ target."""
    vm = world.vm_pg
    vm.execute(f"CREATE DATABASE rangedb OWNER {vm.admin}")
    vm.execute(f"CREATE DATABASE gendb OWNER {vm.admin}")
    with vm.connect("rangedb", superuser=False) as conn:
        conn.execute("CREATE TYPE public.floatrange AS RANGE (subtype = float8); "
                     "CREATE TABLE public.spans (id int PRIMARY KEY, r public.floatrange); "
                     f"CREATE COLLATION public.german (provider = libc, locale = '{FLEXIBLE_LOCALE}'); "
                     "CREATE TABLE public.names (n text COLLATE public.german)")
    with vm.connect("gendb", superuser=False) as conn:
        conn.execute("CREATE TABLE public.parent (a int, b int); "
                     "CREATE TABLE public.child (a int, b int GENERATED ALWAYS AS (a * 2) STORED) "
                     "INHERITS (public.parent)")
    yield world
    for name in ("rangedb", "gendb"):
        vm.drop_database(name)


def test_range_types_and_collations_the_target_can_create_pass(vm_databases):
    code, checks = check_vm_source(vm_databases, "rangedb")
    assert checks["source-casts"]["status"] == "pass", checks["source-casts"]   # not float8range AS ...multirange
    assert checks["source-collations"]["status"] == "pass", checks["source-collations"]
    assert code == 0, [c for c in checks.values() if c["status"] == "fail"]


def test_a_generated_child_column_under_a_plain_parent_fails_for_a_16_plus_target(vm_databases):
    for target in ("flex1", "flex16"):   # 18 and 16
        code, checks = check_vm_source(vm_databases, "gendb", target)
        found = checks["generated-columns"]
        assert code == 1 and found["status"] == "fail", found
        assert "public.child.b" in found["message"] and "public.parent" in found["message"], found["message"]
        assert "DROP EXPRESSION" in found["fix"]


def test_what_a_newer_major_no_longer_has_fails_with_the_objects_named(chk):
    """A Single Server (11) may hold what 12 and 14 removed: a postfix operator, an abstime column, an aggregate
    over the old array_append(anyarray, anyelement). An 18 target cannot create them: check names them."""
    with chk.single.pg.connect("chkdb", superuser=False) as conn:
        conn.execute("CREATE FUNCTION public.fact(bigint) RETURNS numeric LANGUAGE sql AS 'SELECT 1::numeric'; "
                     "CREATE OPERATOR public.!!! (LEFTARG = bigint, PROCEDURE = public.fact); "
                     "CREATE TABLE public.legacy (id int PRIMARY KEY, seen abstime); "
                     "CREATE AGGREGATE public.collect(anyelement) (SFUNC = array_append, STYPE = anyarray, "
                     "INITCOND = '{}')")
    try:
        code, checks, _ = check(chk)
    finally:
        with chk.single.pg.connect("chkdb", superuser=False) as conn:
            conn.execute("DROP OPERATOR public.!!! (bigint, NONE); DROP FUNCTION public.fact(bigint); "
                         "DROP TABLE public.legacy; DROP AGGREGATE public.collect(anyelement)")
    assert code == 1
    assert checks["postfix-operators"]["status"] == "fail" and "!!!" in checks["postfix-operators"]["message"]
    assert checks["removed-types"]["status"] == "fail" and "public.legacy.seen" in checks["removed-types"]["message"]
    assert checks["polymorphics"]["status"] == "fail" and "collect" in checks["polymorphics"]["message"]
    code, checks, _ = check(chk)
    assert code == 0 and checks["postfix-operators"]["status"] == "pass"   # nothing left: nothing said


def test_a_view_over_a_system_view_column_a_newer_major_dropped_fails(vm_databases):
    """17 moved pg_stat_bgwriter's checkpoint counters to pg_stat_checkpointer: a monitoring view of a 15
    source over checkpoints_timed cannot be created on 18 (named, with the fix) but can on 16."""
    vm = vm_databases.vm_pg
    vm.execute(f"CREATE DATABASE monitordb OWNER {vm.admin}")
    try:
        with vm.connect("monitordb", superuser=False) as conn:
            conn.execute("CREATE VIEW public.checkpoints AS SELECT checkpoints_timed, buffers_clean "
                         "FROM pg_stat_bgwriter")
        code, checks = check_vm_source(vm_databases, "monitordb")
        _, on16 = check_vm_source(vm_databases, "monitordb", "flex16")
    finally:
        vm.drop_database("monitordb")
    found = checks["system-columns"]
    assert code == 1 and found["status"] == "fail", found
    assert "public.checkpoints uses pg_catalog.pg_stat_bgwriter.checkpoints_timed" in found["message"], found
    assert "buffers_clean" not in found["message"], found   # still there in 18
    assert on16["system-columns"]["status"] == "pass", on16["system-columns"]
