"""cleanup --online-leftovers with real servers: what `run --online` made is found by name, without the work dir,
after the run was killed with SIGKILL, or killed between creating the subscription and enabling it, or with the
work dir of a following migration lost. A migration that is copying or following is listed and kept unless
--include-following; after a removal nothing of the run is left on either server."""
import os
import shutil
import signal
import subprocess
import time
from contextlib import ExitStack

import pytest

from tests.infra.azcli import AZ
from tests.infra.pgserver import flexible_server
from tests.test_online import DB, following, logical_source, nothing_left, run_args


@pytest.fixture(scope="module")
def target(world):
    """A Flexible-shaped 16 target whose admin may subscribe (as test_online's, a server of this module's own)."""
    with ExitStack() as stack:
        pg = flexible_server("lefttgt", 16, world.certs)
        pg.start()
        stack.callback(pg.stop)
        pg.execute(f"GRANT pg_create_subscription TO {pg.admin}")
        yield pg


def cleanup_args(source, target, *extra):
    return ["postgres", "dumprestore", "cleanup", "--online-leftovers",
            "--source-host", source.host, "--source-port", str(source.port), "--source-admin-user", source.admin,
            "--source-admin-password", source.admin_password, "--target-host", target.host, "--target-port",
            str(target.port), "--target-admin-user", target.admin, "--target-admin-password", target.admin_password,
            *extra]


def listed(items):
    return sorted((i["kind"], i["side"], i["database"] or "", i["status"]) for i in items)


def follows(source, target):
    """A row written on the source now reaches the target."""
    with source.connect(DB, superuser=False) as conn:
        conn.execute("INSERT INTO customers (name) VALUES ('after the cleanup')")
    deadline = time.time() + 30
    while time.time() < deadline:
        if target.execute("SELECT 1 FROM customers WHERE name = 'after the cleanup'", dbname=DB):
            return True
        time.sleep(0.2)
    return False


def test_a_following_migration_is_kept_and_a_dead_one_removed(world, target, tmp_path):
 
    with ExitStack() as stack:
        source = following(stack, world, target, tmp_path, "onlleft")   # 16: the run makes a login too
        everything = [("publication", "source", DB), ("replication-slot", "source", DB), ("role", "source", ""),
                      ("schema", "source", DB), ("schema", "target", DB), ("subscription", "target", DB)]
        shown = world.az.json(*cleanup_args(source, target, "--dry-run"))
        assert listed(shown) == sorted(k + ("kept",) for k in everything)
        assert all(i["inUse"] for i in shown)
        assert len({i["name"] for i in shown if i["kind"] != "schema"}) == 1   # one run, one name
        kept = world.az.json(*cleanup_args(source, target))   # no --yes, no terminal: nothing to ask about
        assert {i["status"] for i in kept} == {"kept"}
        assert follows(source, target)

        # What a run killed between creating the subscription and enabling it leaves; its work dir lost.
        name = target.execute("SELECT subname FROM pg_subscription")[0][0]
        target.execute(f"ALTER SUBSCRIPTION {name} DISABLE", dbname=DB)
        shutil.rmtree(tmp_path / "wd")
        deadline = time.time() + 30
        while source.execute("SELECT active FROM pg_replication_slots")[0][0] and time.time() < deadline:
            time.sleep(0.2)   # the subscription's WAL sender lets the slot go
        shown = world.az.json(*cleanup_args(source, target, "--dry-run"))
        assert listed(shown) == sorted(k + ("to remove",) for k in everything)
        assert {i["name"] for i in shown if i["kind"] != "schema"} == {name}

        refused = world.az.run(*cleanup_args(source, target), check=False)
        assert refused.returncode != 0 and "--yes" in refused.stderr
        assert source.execute("SELECT count(*) FROM pg_replication_slots")[0][0] == 1   # nothing removed

        removed = world.az.json(*cleanup_args(source, target, "--yes"))
        assert listed(removed) == sorted(k + ("removed",) for k in everything)
        nothing_left(source, target)
        again = world.az.json(*cleanup_args(source, target, "--yes"))
        assert again == []


def test_include_following_ends_a_migration_whose_work_dir_is_lost(world, target, tmp_path):
 
    with ExitStack() as stack:
        source = following(stack, world, target, tmp_path, "onllost")
        shutil.rmtree(tmp_path / "wd")
        removed = world.az.json(*cleanup_args(source, target, "--include-following", "--yes"))
        assert {i["status"] for i in removed} == {"removed"} and len(removed) == 6
        assert all(i["inUse"] for i in removed)
        nothing_left(source, target)
        assert target.execute("SELECT count(*) FROM orders", dbname=DB) == \
            source.execute("SELECT count(*) FROM orders", dbname=DB)   # the copy stays


def test_what_a_sigkilled_run_left_is_found_and_removed(world, target, tmp_path):
 
    with ExitStack() as stack:
        source = logical_source(stack, world, 16, "onlkill")
        target.drop_database(DB)
        proc = subprocess.Popen([str(AZ), *run_args(source, target, tmp_path / "wd", "--online")],
                                env=world.az.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            deadline = time.time() + 120
            # Killed once the slot's snapshot is being copied from: the target's database is made, not followed.
            while not (source.execute("SELECT 1 FROM pg_replication_slots") and
                       target.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB,))):
                assert proc.poll() is None and time.time() < deadline, "the run ended before its slot was made"
                time.sleep(0.05)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert target.execute("SELECT subname FROM pg_subscription") == [], "killed too late: it subscribed"
        deadline = time.time() + 30
        while (source.execute("SELECT active FROM pg_replication_slots")[0][0] or
               source.execute("SELECT 1 FROM pg_locks WHERE locktype = 'advisory'")) and time.time() < deadline:
            time.sleep(0.2)   # the dead client's WAL sender and sessions exit
        slot = source.execute("SELECT slot_name FROM pg_replication_slots")[0][0]
        # While the run that made them lives (copying: its slot idle, no subscription yet) they are in use: it holds
        # an advisory lock named after them, as this session does now in its stead.
        with source.connect(DB) as alive:
            token = int(slot.rsplit("_", 1)[1], 16)
            alive.execute("SELECT pg_advisory_lock(20261202, %s)", (token - (1 << 32) if token >= 1 << 31 else token,))
            kept = world.az.json(*cleanup_args(source, target, "--dry-run"))
            assert {i["status"] for i in kept if i["name"] == slot} == {"kept"}
            assert all(i["inUse"] for i in kept if i["name"] == slot)
        shown = world.az.json(*cleanup_args(source, target, "--dry-run"))
        kinds = {(i["kind"], i["side"]) for i in shown}
        assert {("replication-slot", "source"), ("publication", "source"), ("schema", "source")} <= kinds
        assert {i["status"] for i in shown} == {"to remove"} and not any(i["inUse"] for i in shown)
        removed = world.az.json(*cleanup_args(source, target, "--yes"))
        assert {i["status"] for i in removed} == {"removed"}
        nothing_left(source, target)


def test_the_two_modes_take_their_own_options(world):
    mixed = world.az.run("postgres", "dumprestore", "cleanup", "--online-leftovers", "-g", "rg", "-s", "flex1",
                         check=False)
    assert mixed.returncode != 0 and "--server-name" in mixed.stderr and "Run cleanup twice" in mixed.stderr
    stray = world.az.run("postgres", "dumprestore", "cleanup", "-g", "rg", "-s", "flex1", "--dry-run",
                         check=False)
    assert stray.returncode != 0 and "only work with --online-leftovers" in stray.stderr
    help_text = world.az.run("postgres", "dumprestore", "cleanup", "-h").stdout
    assert "--online-leftovers" in help_text and "--include-following" in help_text
