"""`az postgres dumprestore run`, `dump` and `restore` between real servers, through the real az."""
import json
import os
import shutil
import subprocess

import pytest

from tests.infra.pgbin import bindir
from tests.infra.world import RESOURCE_GROUP
from tests.migration_helpers import SECOND_DB, assert_same, result_of, write_pgpass

RUN = ("postgres", "dumprestore", "run")


@pytest.fixture(scope="module")
def mig(world, rich_source, tmp_path_factory):
    """The rich source on the Single Server, and an az whose libpq finds every password in a .pgpass."""
    tmp = tmp_path_factory.mktemp("mig")
    gw, flex, vm = world.gateway, world.flexible.pg, world.vm_pg
    pgpass = write_pgpass(tmp / "pgpass", [
        (gw.host, gw.port, f"{world.single.pg.admin}@single1", world.single.pg.admin_password),
        (flex.host, flex.port, flex.admin, flex.admin_password),
        (vm.host, vm.port, vm.admin, vm.admin_password)])
    env = dict(world.az.env, PGPASSFILE=str(pgpass))
    secrets = [world.single.pg.admin_password, flex.admin_password, vm.admin_password,
               world.single.pg.superuser_password, flex.superuser_password, vm.superuser_password]

    class Mig:
        def __init__(self):
            self.tmp, self.env = tmp, env

        def source(self):
            return ["--source-server", "single1", "--source-host", gw.host, "--source-port", str(gw.port)]

        def target(self, kind):
            if kind == "flexible":
                return ["--target-server", "flex1", "--target-host", flex.host, "--target-port", str(flex.port)]
            return ["--target-host", vm.host, "--target-port", str(vm.port), "--target-admin-user", vm.admin]

        def az(self, *args, env=None, check=False):
            proc = world.az.run(*args, "-g", RESOURCE_GROUP, env=env or self.env, check=check, timeout=600)
            for secret in secrets:
                assert secret not in proc.stdout and secret not in proc.stderr
            return proc

        def run(self, target_kind, *extra, pg_bin=18, env=None):
            bins = ["--pg-bin-dir", str(bindir(pg_bin))] if pg_bin else []
            return self.az(*RUN, *self.source(), *self.target(target_kind), *bins, *extra, "-o", "json",
                           env=env)
    return Mig()


def target_pg(world, kind):
    return world.flexible.pg if kind == "flexible" else world.vm_pg


def check_succeeded(proc, databases):
    assert proc.returncode == 0, proc.stderr
    result = result_of(proc)
    assert result["status"] == "succeeded"
    assert [d["name"] for d in result["databases"]] == databases
    for db in result["databases"]:
        assert db["status"] == "succeeded" and db["errors"]["real"] == 0, db
        assert os.path.exists(db["errorsLog"]) and db["dumpBytes"] > 0
    return result


@pytest.mark.parametrize("method", ["plain", "directory", "stream"])
def test_single_11_to_vm_15_one_database(world, mig, method):
    proc = mig.run("vm", "--method", method, "--databases", "appdb", "--work-dir", str(mig.tmp / f"one-{method}"),
                   "--if-exists", "drop", "--yes", pg_bin=15)
    check_succeeded(proc, ["appdb"])
    assert_same(world.single.pg, world.vm_pg, "appdb")
    if method == "stream":  # it kept no data files: a restore from its work dir would give empty tables
        refused = mig.az("postgres", "dumprestore", "restore", *mig.target("vm"), "--work-dir",
                         str(mig.tmp / "one-stream"), "--pg-bin-dir", str(bindir(15)))
        assert refused.returncode != 0 and "kept no data files" in refused.stderr


def test_existing_target_database_fails_by_default(world, mig):
    mig.run("vm", "--databases", "appdb", "--work-dir", str(mig.tmp / "exists-setup"), "--if-exists", "drop",
            "--yes")
    proc = mig.run("vm", "--databases", "appdb", "--work-dir", str(mig.tmp / "exists"))
    assert proc.returncode != 0 and proc.stdout == ""
    assert "already has 'appdb'" in proc.stderr and "--if-exists reuse" in proc.stderr
    assert not (mig.tmp / "exists").exists()


def test_real_restore_errors_fail_the_database(world, mig):
    """Restoring into a database that already holds the tables: every CREATE fails, for real."""
    mig.run("vm", "--databases", "appdb", "--work-dir", str(mig.tmp / "errors-setup"), "--if-exists", "drop",
            "--yes")
    proc = mig.run("vm", "--databases", "appdb", "--work-dir", str(mig.tmp / "errors"), "--if-exists", "reuse",
                   "--method", "plain", "--no-roles")
    assert proc.returncode == 1
    result = result_of(proc)
    db = result["databases"][0]
    assert result["status"] == "failed" and db["status"] == "failed" and db["failedStep"] == "restore"
    assert db["errors"]["real"] > 0 and "already exists" in db["error"]
    with open(db["errorsLog"], encoding="utf-8") as log:
        assert "already exists" in log.read()
    assert "The migration failed for appdb" in proc.stderr


def test_too_old_utilities_stop_before_anything(world, mig, tmp_path):
    fake = tmp_path / "oldbin"
    fake.mkdir()
    for program in ("pg_dump", "pg_dumpall", "pg_restore", "psql", "createdb", "dropdb", "vacuumdb"):
        script = fake / program
        script.write_text("#!/bin/sh\necho \"$(basename \"$0\") (PostgreSQL) 12.1\"\n")
        script.chmod(0o755)
    env = dict(mig.env, PATH=f"{fake}:{mig.env['PATH']}")
    world.flexible.pg.execute("DROP DATABASE IF EXISTS appdb WITH (FORCE)")
    proc = mig.run("flexible", "--databases", "appdb", "--work-dir", str(tmp_path / "wd"), pg_bin=None, env=env)
    assert proc.returncode != 0
    assert "must be version 18 or newer" in proc.stderr and "12.1" in proc.stderr
    assert "--pg-bin-dir" in proc.stderr
    assert not (tmp_path / "wd").exists()
    assert world.flexible.pg.execute("SELECT count(*) FROM pg_database WHERE datname = 'appdb'")[0][0] == 0


def test_dry_run_prints_the_plan_and_runs_nothing(world, mig):
    world.flexible.pg.execute("DROP DATABASE IF EXISTS appdb WITH (FORCE)")
    proc = mig.run("flexible", "--databases", "appdb", "--dry-run", "--method", "directory", "--work-dir",
                   str(mig.tmp / "dry"))
    assert proc.returncode == 0, proc.stderr
    plan = result_of(proc)
    assert [s["name"] for s in plan["steps"]] == ["roles-dump", "roles-existing", "roles-clean", "roles-restore",
                                                  "dump", "create", "restore-list", "restore-clean",
                                                  "restore-schemas", "restore", "analyze"]
    dump = next(s for s in plan["steps"] if s["name"] == "dump")
    assert dump["argv"][0].endswith("/pg_dump") and "--format=directory" in dump["argv"]
    assert "user=pgadmin@single1 " in dump["argv"][-1] and dump["secretEnv"] == ["PGPASSWORD"]
    # An 18 target with 18 utilities: statistics travel with the dump; ANALYZE only covers what they miss.
    analyze = plan["steps"][-1]
    assert "--statistics" in dump["argv"] and analyze["argv"][0].endswith("/psql") and "reltuples < 0" in \
        " ".join(analyze["argv"])
    assert world.flexible.pg.execute("SELECT count(*) FROM pg_database WHERE datname = 'appdb'")[0][0] == 0
    plain = result_of(mig.run("flexible", "--databases", "appdb", "--dry-run", "--method", "plain", "--no-roles",
                              "--work-dir", str(mig.tmp / "dry-plain")))
    assert [s["name"] for s in plain["steps"]] == ["create", "transfer", "analyze"]
    transfer = plain["steps"][1]
    assert transfer["argv"][0].endswith("/pg_dump") and transfer["pipe"]["argv"][0].endswith("/psql")
    assert not (mig.tmp / "dry").exists() and not (mig.tmp / "dry-plain").exists()  # a dry run writes nothing
    vm = result_of(mig.run("vm", "--databases", "appdb", "--dry-run", "--method", "plain", "--no-roles",
                           "--if-exists", "reuse", "--work-dir", str(mig.tmp / "dry-vm")))
    assert "--statistics" not in vm["steps"][1]["argv"] and "vacuumdb" in vm["steps"][-1]["argv"][0]  # 15 target


def test_dump_on_one_agent_restore_on_another(world, mig):
    wd = mig.tmp / "split"
    proc = mig.az("postgres", "dumprestore", "dump", *mig.source(), "--databases", "appdb", "--work-dir", str(wd),
                  "--pg-bin-dir", str(bindir(15)), "-o", "json")
    assert proc.returncode == 0, proc.stderr
    assert result_of(proc)["databases"][0]["status"] == "succeeded"
    copy = mig.tmp / "split-copied"  # another agent gets the folder as an artifact
    shutil.copytree(wd, copy)
    proc = mig.az("postgres", "dumprestore", "restore", *mig.target("vm"), "--work-dir", str(copy),
                  "--if-exists", "drop", "--yes", "--pg-bin-dir", str(bindir(15)), "-o", "json")
    check_succeeded(proc, ["appdb"])
    assert_same(world.single.pg, world.vm_pg, "appdb")
    # 18 utilities restoring onto a 15 server leave out statistics a dump made for an 18 target may carry;
    # 15 utilities neither know them nor the option.
    for tools, expected in ((18, True), (15, False)):
        plan = result_of(mig.az("postgres", "dumprestore", "restore", *mig.target("vm"), "--work-dir", str(copy),
                                "--if-exists", "drop", "--yes", "--pg-bin-dir", str(bindir(tools)), "--dry-run",
                                "-o", "json"))
        restores = [s["argv"] for s in plan["steps"] if s["name"] in ("restore-schemas", "restore")]
        assert restores and all(("--no-statistics" in argv) == expected for argv in restores)


def test_restore_a_plain_file_made_by_pg_dump(world, mig):
    dump = mig.tmp / "hand-made.sql"
    pg = world.single.pg
    # Made without owners and grants: its roles are not on this target (roles travel with run, not a file).
    # With the planner's statistics, as pg_dump 18 writes them for an 18 target (and run does onto 18).
    subprocess.run([str(bindir(18) / "pg_dump"), f"--file={dump}", "--no-owner", "--no-acl", "--statistics",
                    f"--dbname=host={pg.host} port={pg.port} user={pg.bootstrap} dbname=appdb sslmode=require"],
                   env=dict(os.environ, PGPASSWORD=pg.superuser_password), check=True, timeout=120)
    assert "pg_restore_relation_stats" in dump.read_text()
    from tests.migration_helpers import table_counts
    for side, server, stats_left_out in (("flexible", world.flexible.pg, False), ("vm", world.vm_pg, True)):
        server.execute("DROP DATABASE IF EXISTS appdb WITH (FORCE)")
        proc = mig.az("postgres", "dumprestore", "restore", *mig.target(side), "--dump-file", str(dump),
                      "--target-database", "appdb", "--pg-bin-dir", str(bindir(18)), "-o", "json")
        result = result_of(proc)
        assert proc.returncode == 0, proc.stderr
        db = result["databases"][0]
        assert db["status"] == "succeeded" and result["method"] == "plain" and db["errors"]["real"] == 0, db
        # A server before 18 has no pg_restore_relation_stats: those entries are left out, and said so.
        left_out = [x for x in db.get("leftOut", []) if x["object"].startswith("STATISTICS DATA ")]
        assert bool(left_out) == stats_left_out and all("older than PostgreSQL 18" in x["reason"] for x in left_out)
        assert table_counts(server, "appdb") == table_counts(pg, "appdb")


def test_restore_refuses_an_unfinished_dump_and_a_missing_file(world, mig):
    wd = mig.tmp / "unfinished"
    proc = mig.az("postgres", "dumprestore", "dump", *mig.source(), "--databases", SECOND_DB, "--no-roles",
                  "--work-dir", str(wd), "--pg-bin-dir", str(bindir(18)), "-o", "json")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((wd / "migration.json").read_text())
    (wd / "migration.json").write_text(json.dumps(dict(manifest, status="running")))  # as after a kill -9
    proc = mig.az("postgres", "dumprestore", "restore", *mig.target("vm"), "--work-dir", str(wd),
                  "--pg-bin-dir", str(bindir(18)))
    # "running" with no live process behind it: a killed dump, read as what it is
    assert proc.returncode != 0 and "was interrupted" in proc.stderr and "dump` again" in proc.stderr
    proc = mig.az("postgres", "dumprestore", "restore", *mig.target("vm"), "--dump-file", str(mig.tmp / "nope.sql"),
                  "--target-database", "nope", "--pg-bin-dir", str(bindir(18)))
    assert proc.returncode != 0 and "nope.sql does not exist" in proc.stderr


def test_a_work_dir_holding_another_migration_is_refused_unless_reused(world, mig):
    wd = mig.tmp / "twice"
    first = mig.run("vm", "--databases", SECOND_DB, "--no-roles", "--work-dir", str(wd), "--if-exists", "drop",
                    "--yes", "--method", "plain")
    assert first.returncode == 0, first.stderr
    again = mig.run("vm", "--databases", SECOND_DB, "--no-roles", "--work-dir", str(wd), "--if-exists", "drop",
                    "--yes", "--method", "plain")
    assert again.returncode != 0 and "already holds a migration" in again.stderr
    assert "--reuse-work-dir" in again.stderr
    reused = mig.run("vm", "--databases", SECOND_DB, "--no-roles", "--work-dir", str(wd), "--if-exists", "drop",
                     "--yes", "--method", "plain", "--reuse-work-dir")
    assert reused.returncode == 0, reused.stderr


def test_verify_full_tls_with_a_ca_file(world, mig):
    proc = mig.run("vm", "--databases", SECOND_DB, "--dry-run", "--ssl-root-cert", str(world.certs.ca),
                   "--source-ssl-mode", "verify-full", "--target-ssl-mode", "verify-full", "--if-exists", "drop")
    assert proc.returncode == 0, proc.stderr
    dump = next(s for s in result_of(proc)["steps"] if s["name"] == "dump-schema")  # the stream method's pg_dump
    assert "sslmode=verify-full" in dump["argv"][-1] and f"sslrootcert={world.certs.ca}" in dump["argv"][-1]
    wrong_ca = mig.tmp / "other-ca.pem"
    from tests.infra.certs import make_certs
    wrong_ca.write_bytes(make_certs(mig.tmp / "other").ca.read_bytes())
    proc = mig.run("vm", "--databases", SECOND_DB, "--dry-run", "--ssl-root-cert", str(wrong_ca),
                   "--source-ssl-mode", "verify-full")
    assert proc.returncode != 0 and "SSL error" in proc.stderr  # the server certificate is not from that CA


def finished(work_dir, name):
    try:
        manifest = json.loads((work_dir / "migration.json").read_text())
    except (OSError, ValueError):
        return False
    databases = manifest.get("result", {}).get("databases", [])
    return any(d["name"] == name and d["status"] == "succeeded" for d in databases)


def test_resume_finishes_an_interrupted_run_without_redoing_what_it_finished(world, mig):
    """SIGTERM while the second database's pg_dump waits on a lock; the plain method has created that database
    on the target already. --resume drops the half-made copy, makes it again, and leaves the first alone."""
    import signal
    import time
    from tests.infra.azcli import AZ
    wd = mig.tmp / "resume"
    for name in (SECOND_DB, "appdb"):
        world.vm_pg.drop_database(name)
    locker = world.single.pg.connect("appdb", autocommit=False)
    locker.execute("LOCK TABLE sales.audit IN ACCESS EXCLUSIVE MODE")
    args = [*RUN, *mig.source(), *mig.target("vm"), "-g", "azext-pgdump-rg", "--pg-bin-dir", str(bindir(18)),
            "--method", "plain", "--jobs", "1", "--work-dir", str(wd), "-o", "json"]
    proc = subprocess.Popen([str(AZ), *args, "--databases", SECOND_DB, "appdb"], env=mig.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        # With --jobs 1 the executor's budget (one connection per server) moves the databases one at a time.
        while not (world.single.pg.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = 'appdb' "
                                           "AND application_name = 'pg_dump' AND wait_event_type = 'Lock'")[0][0]
                   and finished(wd, SECOND_DB)):
            assert time.time() < deadline and proc.poll() is None, "pg_dump never waited on the lock"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)
    finally:
        locker.close()
    assert proc.returncode != 0
    manifest = json.loads((wd / "migration.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["interruptedStep"]["database"] == "appdb"
    assert world.vm_pg.execute("SELECT count(*) FROM pg_database WHERE datname = 'appdb'")[0][0] == 1  # half-made
    first = world.vm_pg.execute("SELECT oid FROM pg_database WHERE datname = %s", (SECOND_DB,))[0][0]

    resumed = mig.az(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    result = result_of(resumed)
    assert result["resumed"]["finishedBefore"] == [SECOND_DB] and result["resumed"]["migratedNow"] == ["appdb"]
    assert [d["status"] for d in result["databases"]] == ["succeeded", "succeeded"]
    assert "earlier run" in result["databases"][0]["resumed"] and "verify" in result["resumed"]["note"]
    assert world.vm_pg.execute("SELECT oid FROM pg_database WHERE datname = %s", (SECOND_DB,))[0][0] == first
    for name in (SECOND_DB, "appdb"):
        assert_same(world.single.pg, world.vm_pg, name)
    again = mig.az(*args, "--resume")  # nothing left to do: nothing is done
    assert again.returncode == 0 and result_of(again)["resumed"]["migratedNow"] == []
