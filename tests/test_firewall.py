"""Temporary firewall rules through the real az and the emulator, whose rules really gate connections."""
import json
import os
import signal
import subprocess
import time

import psycopg
import pytest

from tests.infra.azcli import AZ
from tests.infra.pgbin import bindir
from tests.infra.world import RESOURCE_GROUP

PREFIX = "azext-pgdump-"


@pytest.fixture(scope="module")
def gated(world):
    """Both servers admit only addresses their firewall rules cover, as Azure does."""
    world.single.pg.execute("CREATE DATABASE fwdb OWNER pgadmin")
    with world.single.pg.connect("fwdb", superuser=False) as conn:
        conn.execute("CREATE TABLE locked (id int PRIMARY KEY); INSERT INTO locked SELECT generate_series(1, 10)")
    for server in (world.flexible, world.single):
        server.enforce_firewall = True
        world.emulator.apply_firewall(server)
    yield world
    for server in (world.flexible, world.single):
        server.enforce_firewall = False
        server.firewall_rules.clear()
        world.emulator.apply_firewall(server)
        server.pg.drop_database("fwdb")  # other modules list every database


def admin_connect(server):
    info = server.pg.conninfo(superuser=False)
    user = f"{server.pg.admin}@{server.name}" if server.kind == "single" else server.pg.admin
    info.update(host=server.connect_host, port=server.connect_port, user=user)
    return psycopg.connect(**info)


def run_args(world, *extra):
    gw, flex = world.gateway, world.flexible.pg
    return ["postgres", "dumprestore", "run", "-g", RESOURCE_GROUP, "--databases", "fwdb",
            "--source-server", "single1", "--source-host", gw.host, "--source-port", str(gw.port),
            "--source-admin-password", world.single.pg.admin_password,
            "--target-server", "flex1", "--target-host", flex.host, "--target-port", str(flex.port),
            "--target-admin-password", flex.admin_password, "--pg-bin-dir", str(bindir(18)), *extra]


def our_rule_calls(world, since):
    return [(method, path.rsplit("/", 1)[-1]) for method, path, _ in world.emulator.requests[since:]
            if "/firewallRules/" in path and method in ("PUT", "DELETE")]


def no_rules_left(world):
    return not world.flexible.firewall_rules and not world.single.firewall_rules


@pytest.mark.parametrize("kind", ["flexible", "single"])
def test_rules_really_gate_connections(gated, kind):
    server = getattr(gated, kind)
    with pytest.raises(psycopg.OperationalError, match='no pg_hba.conf entry for host "127.0.0.1"'):
        admin_connect(server)
    gated.emulator.set_firewall_rule(server, "office", "127.0.0.1", "127.0.0.1")
    admin_connect(server).close()
    gated.emulator.set_firewall_rule(server, "office", delete=True)
    with pytest.raises(psycopg.OperationalError, match="no pg_hba.conf entry"):
        admin_connect(server)


def test_run_opens_rules_only_where_needed_and_removes_them(gated, tmp_path):
    gated.emulator.set_firewall_rule(gated.single, "office", "127.0.0.1", "127.0.0.1")  # the source admits us
    since = len(gated.emulator.requests)
    proc = gated.az.run(*run_args(gated, "--work-dir", str(tmp_path / "wd"), "--if-exists", "drop", "--yes",
                                  "-o", "json"), check=False, timeout=600)
    assert proc.returncode == 0, proc.stderr
    calls = our_rule_calls(gated, since)
    assert [m for m, _ in calls] == ["PUT", "DELETE"] and calls[0][1] == calls[1][1]
    assert calls[0][1].startswith(PREFIX)
    assert list(gated.single.firewall_rules) == ["office"] and not gated.flexible.firewall_rules
    assert "temporary rule" in proc.stderr and "Removed the temporary firewall rule" in proc.stderr
    assert gated.flexible.pg.execute("SELECT count(*) FROM locked", dbname="fwdb")[0][0] == 10
    gated.emulator.set_firewall_rule(gated.single, "office", delete=True)


def test_both_rules_are_removed_when_the_command_fails_midway(gated, tmp_path):
    gated.flexible.pg.execute("CREATE DATABASE fwdb") if not gated.flexible.pg.execute(
        "SELECT 1 FROM pg_database WHERE datname = 'fwdb'") else None
    since = len(gated.emulator.requests)
    proc = gated.az.run(*run_args(gated, "--work-dir", str(tmp_path / "wd"), "--yes"), check=False)
    assert proc.returncode != 0 and "already has 'fwdb'" in proc.stderr  # fails after both rules were made
    assert sorted(m for m, _ in our_rule_calls(gated, since)) == ["DELETE", "DELETE", "PUT", "PUT"]
    assert no_rules_left(gated)


def test_no_tty_and_no_yes_names_yes_and_changes_nothing(gated):
    since = len(gated.emulator.requests)
    proc = gated.az.run(*run_args(gated, "--dry-run"), check=False)
    assert proc.returncode != 0 and "--yes" in proc.stderr
    assert our_rule_calls(gated, since) == [] and no_rules_left(gated)


def test_firewall_rule_none_never_touches_rules(gated):
    since = len(gated.emulator.requests)
    proc = gated.az.run(*run_args(gated, "--dry-run", "--firewall-rule", "none", "--yes"), check=False)
    assert proc.returncode != 0 and "no pg_hba.conf entry" in proc.stderr and "--firewall-rule" in proc.stderr
    assert our_rule_calls(gated, since) == []


def test_throttling_and_server_errors_from_arm_are_retried(gated):
    """ARM answers 500 and 503, and throttles with 429, for a while: az's retry policy waits and the command
    goes on as if nothing happened; the rules are still removed."""
    em = gated.emulator
    em.fail("GET", r"/flexibleServers/flex1$", 500, times=2)
    em.fail("PUT", r"/firewallRules/", 429, times=2)
    em.fail("DELETE", r"/firewallRules/", 503, times=1)
    since = len(em.requests)
    try:
        proc = gated.az.run(*run_args(gated, "--dry-run", "--yes", "--if-exists", "drop", "-o", "json"), check=False,
                            timeout=300)
    finally:
        em.faults.clear()
    assert proc.returncode == 0, proc.stderr
    assert no_rules_left(gated)
    calls = [m for m, _ in our_rule_calls(gated, since)]
    assert calls.count("PUT") == 2 + 2 and calls.count("DELETE") == 2 + 1   # both servers, plus the retries


def test_a_forbidden_firewall_change_fails_with_the_right_to_ask_for(gated):
    em = gated.emulator
    em.fail("PUT", r"/firewallRules/", 403, times=50)
    try:
        proc = gated.az.run(*run_args(gated, "--dry-run", "--yes"), check=False, timeout=300)
    finally:
        em.faults.clear()
    assert proc.returncode != 0
    assert "Could not create a firewall rule" in proc.stderr and "AuthorizationFailed" in proc.stderr
    assert "Contributor" in proc.stderr and "--firewall-rule none" in proc.stderr
    assert no_rules_left(gated)


def start_blocked_run(gated, tmp_path):
    """A run whose pg_dump waits on a table lock, with both temporary rules open."""
    locker = gated.single.pg.connect("fwdb", autocommit=False)
    locker.execute("LOCK TABLE locked IN ACCESS EXCLUSIVE MODE")
    # the directory method: its first step is the pg_dump child that waits on the lock
    proc = subprocess.Popen([str(AZ), *run_args(gated, "--work-dir", str(tmp_path / "wd"), "--if-exists", "drop",
                                                "--yes", "--no-roles", "--method", "directory")],
                            env=gated.az.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        waiting = gated.single.pg.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'fwdb' AND wait_event_type = 'Lock'")[0][0]
        if waiting and gated.flexible.firewall_rules and gated.single.firewall_rules:
            return proc, locker
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    raise AssertionError("pg_dump never started waiting on the lock")


def child_command_lines(pid):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    lines = []
    for child in out.split():
        try:
            with open(f"/proc/{child}/cmdline", "rb") as f:
                lines.append(f.read().replace(b"\0", b" ").decode())
        except FileNotFoundError:
            pass
        lines += child_command_lines(int(child))
    return lines


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_rules_are_removed_on_interrupt(gated, tmp_path, sig):
    proc, locker = start_blocked_run(gated, tmp_path)
    try:
        children = child_command_lines(proc.pid)
        assert any("pg_dump" in c for c in children)
        for secret in (gated.single.pg.admin_password, gated.flexible.pg.admin_password):
            assert not any(secret in c for c in children)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        locker.close()
    assert proc.returncode != 0
    assert no_rules_left(gated), err
    time.sleep(0.5)
    assert gated.single.pg.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = 'fwdb' "
                                   "AND application_name = 'pg_dump'")[0][0] == 0  # the child was stopped
    manifest = json.loads((tmp_path / "wd" / "migration.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["interruptedStep"] == {"name": "dump", "database": "fwdb"}


def test_ctrl_c_again_and_again_does_not_skip_the_clean_up(gated, tmp_path):
    """An impatient user: Ctrl-C every 50 ms until the command ends. The first stops the run; the others must
    not cut short stopping pg_dump, writing the manifest or removing both firewall rules."""
    proc, locker = start_blocked_run(gated, tmp_path)
    try:
        while proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            time.sleep(0.05)
        _, err = proc.communicate(timeout=60)
    finally:
        locker.close()
    assert proc.returncode != 0
    assert no_rules_left(gated), err
    assert "cleaning up first" in err
    manifest = json.loads((tmp_path / "wd" / "migration.json").read_text())
    assert manifest["status"] == "interrupted"


def processes_mentioning(text):
    found = []
    for proc in os.listdir("/proc"):
        try:
            with open(f"/proc/{proc}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    found.append(int(proc))
        except (FileNotFoundError, ProcessLookupError, PermissionError, NotADirectoryError):
            pass
    return found


def test_children_die_with_a_killed_az(gated, tmp_path):
    """kill -9 of az alone (no chance to clean up): its pg_dump must not go on by itself."""
    proc, locker = start_blocked_run(gated, tmp_path)
    try:
        workdir = str(tmp_path / "wd")
        assert processes_mentioning(workdir)  # pg_dump, waiting on the lock
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
        deadline = time.time() + 5
        while processes_mentioning(workdir) and time.time() < deadline:
            time.sleep(0.1)
        assert not processes_mentioning(workdir)
    finally:
        locker.close()
    gated.az.json("postgres", "dumprestore", "cleanup", "-g", RESOURCE_GROUP, "-s", "flex1")
    gated.az.json("postgres", "dumprestore", "cleanup", "--ids", gated.single.id)
    assert no_rules_left(gated)


def test_cleanup_removes_what_a_killed_run_left_and_nothing_else(gated, tmp_path):
    gated.emulator.set_firewall_rule(gated.flexible, "office", "10.1.2.3", "10.1.2.3")
    proc, locker = start_blocked_run(gated, tmp_path)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # az and its pg_dump, with no chance to clean up
        proc.communicate(timeout=60)
    finally:
        locker.close()
    left = [n for n in gated.flexible.firewall_rules if n.startswith(PREFIX)]
    assert len(left) == 1
    kept = gated.az.json("postgres", "dumprestore", "cleanup", "-g", RESOURCE_GROUP, "-s", "flex1",
                         "--older-than", "60")
    assert kept == [] and left[0] in gated.flexible.firewall_rules  # too young: a run may still use it
    wd = tmp_path / "wd"
    assert json.loads((wd / "migration.json").read_text())["status"] == "running"   # as the kill left it
    removed = gated.az.json("postgres", "dumprestore", "cleanup", "-g", RESOURCE_GROUP, "-s", "flex1",
                            "--work-dir", str(wd))
    assert [r["name"] for r in removed] == left
    manifest = json.loads((wd / "migration.json").read_text())   # and the killed run reads as what it is
    assert manifest["status"] == manifest["result"]["status"] == "interrupted" and "pid" not in manifest
    assert [t["status"] for t in manifest["tasks"].values() if t["status"] not in ("succeeded",)] == ["interrupted"]
    assert list(gated.flexible.firewall_rules) == ["office"]
    gated.az.json("postgres", "dumprestore", "cleanup", "--ids", gated.single.id)
    assert not gated.single.firewall_rules
    gated.emulator.set_firewall_rule(gated.flexible, "office", delete=True)


def test_private_access_server_gets_no_rule_and_a_message(gated):
    gated.emulator.set_firewall_rule(gated.single, "office", "127.0.0.1", "127.0.0.1")
    gated.flexible.public_network_access = "Disabled"
    since = len(gated.emulator.requests)
    try:
        proc = gated.az.run(*run_args(gated, "--dry-run", "--yes"), check=False)
    finally:
        gated.flexible.public_network_access = "Enabled"
        gated.emulator.set_firewall_rule(gated.single, "office", delete=True)
    assert proc.returncode != 0 and "public network access disabled" in proc.stderr
    assert "virtual network" in proc.stderr
    assert our_rule_calls(gated, since) == []
