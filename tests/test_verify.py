"""verify after a real run: passes on a faithful copy, and names what differs after a change."""
import json

import pytest

from tests.infra.pgbin import bindir
from tests.infra.world import RESOURCE_GROUP


def sides(world):
    gw, vm = world.gateway, world.vm_pg
    return ["-g", RESOURCE_GROUP,
            "--source-server", "single1", "--source-host", gw.host, "--source-port", str(gw.port),
            f"--source-admin-password={world.single.pg.admin_password}",
            "--target-host", vm.host, "--target-port", str(vm.port), "--target-admin-user", vm.admin,
            f"--target-admin-password={vm.admin_password}"]


@pytest.fixture
def migrated(world, rich_source, tmp_path):
    """appdb freshly migrated to the VM server (PostgreSQL 15)."""
    proc = world.az.run("postgres", "dumprestore", "run", *sides(world), "--databases", "appdb", "--if-exists",
                        "drop", "--yes", "--pg-bin-dir", str(bindir(15)), "--work-dir", str(tmp_path / "wd"),
                        "--verify", "-o", "json", check=False, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["verify"]["status"] == "passed"  # run --verify
    return world


def verify(world, *extra):
    proc = world.az.run("postgres", "dumprestore", "verify", *sides(world), "--databases", "appdb", *extra,
                        "-o", "json", check=False)
    return proc.returncode, json.loads(proc.stdout) if proc.stdout else None, proc.stderr


def test_verify_passes_after_a_real_run(migrated):
    code, result, err = verify(migrated, "--checksum")
    assert code == 0, err
    db = result["databases"][0]
    assert result["status"] == "passed" and db["differences"] == []
    assert {t["table"] for t in db["tables"]} >= {"sales.customer", "sales.orders_2025"}
    assert db["objects"]["source"]["materializedViews"] == db["objects"]["target"]["materializedViews"] == 1
    assert db["objects"]["source"]["triggers"] == 1 and db["objects"]["source"]["types"] >= 3


@pytest.mark.parametrize("change,expected", [
    ("DELETE FROM sales.audit WHERE id = (SELECT max(id) FROM sales.audit)",
     "table sales.audit: row count differs (1302 vs 1301)"),
    ("SELECT setval('sales.invoice_no', 7777777)", "sequence sales.invoice_no: last value"),
    ("DROP INDEX sales.orders_state_idx", "indexes:"),
])
def test_verify_fails_and_names_the_difference(migrated, change, expected):
    migrated.vm_pg.execute(change, dbname="appdb")
    code, result, err = verify(migrated)
    assert code == 1
    assert result["status"] == "failed"
    assert any(expected in d for d in result["databases"][0]["differences"]), result["databases"][0]["differences"]
    assert "differs from the source in appdb" in err


def test_checksum_catches_a_changed_value(migrated):
    migrated.vm_pg.execute("UPDATE sales.customer SET name = 'changed' WHERE id = 500", dbname="appdb")
    assert verify(migrated)[0] == 0  # same counts, same objects
    code, result, _ = verify(migrated, "--checksum")
    assert code == 1 and "table sales.customer: checksum differs" in result["databases"][0]["differences"][0]


def test_run_verify_counts_the_source_in_the_snapshot_the_dump_read(world, rich_source, tmp_path):
    """A row written while pg_dump waits is neither copied nor counted: no false alarm."""
    import subprocess
    import time
    from tests.infra.azcli import AZ
    locker = rich_source.connect("appdb", autocommit=False)
    locker.execute("LOCK TABLE sales.audit IN ACCESS EXCLUSIVE MODE")
    proc = subprocess.Popen([str(AZ), "postgres", "dumprestore", "run", *sides(world), "--databases", "appdb",
                             "--if-exists", "drop", "--yes", "--no-roles", "--pg-bin-dir", str(bindir(15)),
                             "--work-dir", str(tmp_path / "wd"), "--verify", "-o", "json"],
                            env=world.az.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        # pg_dump, or (stream, run's default) the session that read the tables in the exported snapshot
        while not rich_source.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = 'appdb' "
                                      "AND application_name IN ('pg_dump', 'azext_pgdump') "
                                      "AND wait_event_type = 'Lock'")[0][0]:
            assert time.time() < deadline and proc.poll() is None, "nothing waits on the lock"
            time.sleep(0.2)
        rich_source.execute("INSERT INTO sales.customer (name) VALUES ('written during the dump')", dbname="appdb")
    finally:
        locker.close()
    out, err = proc.communicate(timeout=300)
    try:
        assert proc.returncode == 0, err
        result = json.loads(out)
        db = result["databases"][0]
        assert result["verify"]["status"] == "passed" and db["verify"]["differences"] == []
        customers = next(t for t in db["verify"]["tables"] if t["table"] == "sales.customer")
        assert customers["sourceRows"] == customers["targetRows"] == 300  # the source has 301 now
    finally:
        rich_source.execute("DELETE FROM sales.customer WHERE name = 'written during the dump'", dbname="appdb")
