"""--tune-target with the real az, the ARM emulator and real servers: the target is a Flexible-shaped 16 that
the emulator knows as `tune16` (a 32 GiB disk, so max_wal_size is capped), whose configurations API applies a
change with ALTER SYSTEM and a reload. The tests read the values with SHOW during the load and after it, for
each way a run can end: success, failure, SIGINT, SIGTERM, SIGHUP, kill -9 then cleanup or --resume; and a
value someone else changes during the run is left as they set it."""
import json
import signal
import subprocess
import threading
import time
from contextlib import ExitStack

import pytest

from tests.infra.arm_emulator import EmulatedServer
from tests.infra.azcli import AZ
from tests.infra.pgbin import bindir
from tests.infra.pgserver import vm_and_flexible
from tests.infra.world import RESOURCE_GROUP
from tests.migration_helpers import assert_same, result_of
from tests.test_faults import SOURCE_SQL, admin_db, pace

DB = "faultdb"
SERVER = "tune16"
TUNED = {"autovacuum": "off", "checkpoint_timeout": "3600", "work_mem": "32768", "wal_compression": "pglz",  # 16
         "max_parallel_maintenance_workers": "4"}
WATCHED = (*TUNED, "max_wal_size", "maintenance_work_mem")


@pytest.fixture(scope="module")
def tune(world, tmp_path_factory):
    with ExitStack() as stack:
        source, target = vm_and_flexible(stack, "tune", world.certs)
        admin_db(source, DB, SOURCE_SQL)
        pace(target, 40)   # about 6 s of COPY into the paced table: the window the tests act in
        # Flexible gives shared_buffers a quarter of the memory: this one is a 1 GiB server to --tune-target
        target.execute("ALTER SYSTEM SET shared_buffers = '256MB'")
        target.halt()
        target.restart()
        emulated = world.emulator.add_server(EmulatedServer(
            "flexible", RESOURCE_GROUP, SERVER, target, target.host, target.port, f"{SERVER}.test", storage_gb=32))
        t = Tune(world, source, target, emulated, tmp_path_factory.mktemp("tune"))
        t.original = t.values()
        yield t


class Tune:
    def __init__(self, world, source, target, emulated, tmp):
        self.world, self.source, self.target, self.emulated, self.tmp = world, source, target, emulated, tmp

    def values(self) -> dict:
        return dict(self.target.execute("SELECT name, setting FROM pg_settings WHERE name = ANY(%s)",
                                        (list(WATCHED),)))

    def args(self, work_dir, *extra):
        s, t = self.source, self.target
        return ["postgres", "dumprestore", "run", "--databases", DB, "--no-roles", "--work-dir", str(work_dir),
                "--source-host", s.host, "--source-port", str(s.port), "--source-admin-user", s.admin,
                "-g", RESOURCE_GROUP, "--target-server", SERVER, "--target-host", t.host, "--target-port",
                str(t.port), "--pg-bin-dir", str(bindir(18)), "-o", "json", *extra]

    def env(self):
        return dict(self.world.az.env, PGPASSWORD=self.source.admin_password)

    def passwords(self):
        return ["--target-admin-password", self.target.admin_password]

    def popen(self, work_dir, *extra):
        return subprocess.Popen([str(AZ), *self.args(work_dir, *extra), *self.passwords()], env=self.env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)

    def run(self, work_dir, *extra, timeout=600):
        return subprocess.run([str(AZ), *self.args(work_dir, *extra), *self.passwords()], env=self.env(),
                              capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout)

    def fresh(self):
        self.target.drop_database(DB)
        assert self.values() == self.original


class Watcher:
    """SHOW on the target every 50 ms while a run goes: what the load really ran with."""

    def __init__(self, tune):
        self.tune, self.seen, self._stop = tune, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        while not self._stop.wait(0.05):
            self.seen.append(self.tune.values())

    def tuned(self) -> bool:
        return any(all(v.get(k) == want for k, want in TUNED.items()) for v in self.seen)


def wait_until(condition, what, proc, timeout=120):
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, f"the run ended before {what}: {proc.communicate()}"
        assert time.time() < deadline, f"never saw {what}"
        time.sleep(0.05)


def changes_of(result) -> dict:
    return {c["name"]: c for c in result["targetSettings"]["changes"]}


def test_the_plan_and_show_commands_say_every_change_and_change_nothing(tune):
    plan = json.loads(tune.run(tune.tmp / "dry", "--tune-target", "--dry-run").stdout)
    changes = {c["name"]: c for c in plan["targetSettings"]["changes"]}
    assert set(changes) == set(WATCHED)
    assert {n: c["was"] for n, c in changes.items()} == tune.original
    # 32 GiB: read-only under 5 GiB free, so at most half of the 27 GiB less what is used and what comes
    assert int(changes["max_wal_size"]["value"]) < 65536 and "disk" in changes["max_wal_size"]["note"]
    assert int(changes["max_wal_size"]["value"]) > int(tune.original["max_wal_size"])
    # 2 index builds at once in half of 1 GiB
    assert changes["maintenance_work_mem"]["value"] == "262144" and "memory" in changes["maintenance_work_mem"]["note"]
    assert tune.values() == tune.original
    shown = tune.world.az.run("postgres", "dumprestore", "show-commands", "--databases", DB, "--no-roles",
                              "--source-host", tune.source.host, "--source-port", str(tune.source.port),
                              "--source-admin-user", tune.source.admin, "-g", RESOURCE_GROUP, "--target-server",
                              SERVER, "--target-host", tune.target.host, "--target-port", str(tune.target.port),
                              "--target-admin-password", tune.target.admin_password, "--tune-target",
                              "--pg-bin-dir", str(bindir(18)),
                              env=tune.env()).stdout
    set_line = (f"az postgres flexible-server parameter set --resource-group {RESOURCE_GROUP} --server-name {SERVER} "
                "--name autovacuum --value ")
    assert set_line + "off" in shown and set_line + "on" in shown
    assert "bin/pg_restore" in shown[shown.index(set_line + "off"):shown.index(set_line + "on")]   # set, load, undo


def test_tuned_for_the_load_and_given_back_when_it_succeeds(tune):
    tune.fresh()
    with Watcher(tune) as watcher:
        proc = tune.run(tune.tmp / "ok", "--tune-target")
    assert proc.returncode == 0, proc.stderr
    assert watcher.tuned(), proc.stderr
    assert tune.values() == tune.original
    changes = changes_of(result_of(proc))
    assert {c["status"] for c in changes.values()} == {"restored"} and len(changes) == len(WATCHED)
    assert "Putting back the parameters of tune16" in proc.stderr
    assert_same(tune.source, tune.target, DB)


def test_given_back_when_the_run_fails(tune):
    tune.fresh()
    # A table the source's admin may not read: the schema dump fails, after the target was tuned.
    tune.source.execute("CREATE TABLE public.not_yours (id int)", dbname=DB)
    try:
        proc = tune.run(tune.tmp / "fail", "--tune-target", "--skip-check")
    finally:
        tune.source.execute("DROP TABLE public.not_yours", dbname=DB)
    assert proc.returncode == 1 and result_of(proc)["status"] == "failed", proc.stderr
    assert tune.values() == tune.original
    assert {c["status"] for c in changes_of(result_of(proc)).values()} == {"restored"}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_given_back_after_a_signal(tune, sig):
    tune.fresh()
    with Watcher(tune) as watcher:
        proc = tune.popen(tune.tmp / f"sig{sig.value}", "--tune-target")
        wait_until(watcher.tuned, "the target tuned", proc)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + sig.value, err
    result = json.loads(out)
    assert result["status"] == "interrupted" and result["interrupted"]["signal"] == sig.name
    assert tune.values() == tune.original
    assert {c["status"] for c in changes_of(result).values()} == {"restored"}


def killed_while_tuned(tune, name):
    """A run killed (kill -9) once the target runs with the load's values: nobody could give them back."""
    tune.fresh()
    wd = tune.tmp / name
    with Watcher(tune) as watcher:
        proc = tune.popen(wd, "--tune-target")
        wait_until(watcher.tuned, "the target tuned", proc)
        proc.kill()
        proc.communicate(timeout=60)
    assert tune.values()["autovacuum"] == "off"
    return wd


def test_kill_9_leaves_the_record_and_cleanup_gives_back_but_not_what_someone_else_set(tune):
    wd = killed_while_tuned(tune, "kill")
    record = json.loads((wd / "target-settings.json").read_text())
    # the last change may have been killed between ARM's answer and the record: "applying" is given back as well
    assert {c["status"] for c in record["changes"]} <= {"applied", "applying"}
    assert (wd / "target-settings.json").stat().st_mode & 0o077 == 0
    tune.world.emulator.set_parameter(tune.emulated, "work_mem", "8192")   # someone else, meanwhile
    out = tune.world.az.json("postgres", "dumprestore", "cleanup", "-g", RESOURCE_GROUP, "-s", SERVER,
                             "--work-dir", str(wd))
    params = {p["name"]: p for p in out if p["kind"] == "parameter"}
    assert params["work_mem"]["status"] == "left" and params["work_mem"]["value"] == "8192"
    assert {p["status"] for n, p in params.items() if n != "work_mem"} == {"restored"}
    now = tune.values()
    assert now.pop("work_mem") == "8192" and now == {k: v for k, v in tune.original.items() if k != "work_mem"}
    tune.world.emulator.set_parameter(tune.emulated, "work_mem", tune.original["work_mem"])
    again = tune.world.az.json("postgres", "dumprestore", "cleanup", "-g", RESOURCE_GROUP, "-s", SERVER,
                               "--work-dir", str(wd))
    assert [p for p in again if p["kind"] == "parameter"] == []   # given back once, not twice


def test_kill_9_then_resume_gives_back_first_and_finishes(tune):
    wd = killed_while_tuned(tune, "resume")
    with Watcher(tune) as watcher:
        proc = tune.run(wd, "--tune-target", "--resume")
    assert proc.returncode == 0, proc.stderr
    assert "that the earlier run in" in proc.stderr   # the killed run's values went back before anything else
    # the resumed run read the server's own values again: it gives back those, not the killed run's
    assert {n: c["was"] for n, c in changes_of(result_of(proc)).items()} == tune.original
    assert watcher.tuned() and tune.values() == tune.original
    assert_same(tune.source, tune.target, DB)


def test_a_change_someone_else_makes_during_the_run_is_left_and_said(tune):
    tune.fresh()
    with Watcher(tune) as watcher:
        proc = tune.popen(tune.tmp / "other", "--tune-target")
        wait_until(watcher.tuned, "the target tuned", proc)
        tune.world.emulator.set_parameter(tune.emulated, "checkpoint_timeout", "900")
        out, err = proc.communicate(timeout=300)
    try:
        assert proc.returncode == 0, err
        changes = changes_of(json.loads(out))
        assert changes["checkpoint_timeout"]["status"] == "left" and changes["checkpoint_timeout"]["now"] == "900"
        assert "checkpoint_timeout is 900, not the 3600 this run set: someone changed it" in err
        now = tune.values()
        assert now.pop("checkpoint_timeout") == "900"
        assert now == {k: v for k, v in tune.original.items() if k != "checkpoint_timeout"}
    finally:
        tune.world.emulator.set_parameter(tune.emulated, "checkpoint_timeout", tune.original["checkpoint_timeout"])


def test_a_refused_change_is_reported_and_the_load_goes_on(tune):
    tune.fresh()
    tune.world.emulator.fail("PATCH", r"/configurations/autovacuum$", 403)
    proc = tune.run(tune.tmp / "refused", "--tune-target")
    assert proc.returncode == 0, proc.stderr
    changes = changes_of(result_of(proc))
    assert changes["autovacuum"]["status"] == "failed" and "autovacuum" in changes["autovacuum"]["error"]
    assert "autovacuum: not changed, the load runs without it" in proc.stderr
    assert {c["status"] for n, c in changes.items() if n != "autovacuum"} == {"restored"}
    assert tune.values() == tune.original


def test_a_busy_server_is_asked_again(tune):
    """Azure takes one operation on a server at a time and answers ServerBusy to the others (a backup, a scaling,
    a change of someone else's): the change is asked again a little later, not given up."""
    tune.fresh()
    tune.world.emulator.fail("PATCH", r"/configurations/autovacuum$", 409, times=2)
    proc = tune.run(tune.tmp / "busy", "--tune-target")
    assert proc.returncode == 0, proc.stderr
    assert changes_of(result_of(proc))["autovacuum"]["status"] == "restored"
    assert proc.stderr.count("is busy with another operation; setting autovacuum again") == 2
    assert tune.values() == tune.original


def test_a_target_arm_does_not_know_is_refused(tune):
    t = tune.target
    proc = subprocess.run([str(AZ), "postgres", "dumprestore", "run", "--databases", DB, "--no-roles",
                           "--source-host", tune.source.host, "--source-port", str(tune.source.port),
                           "--source-admin-user", tune.source.admin, "--target-host", t.host, "--target-port",
                           str(t.port), "--target-admin-user", t.admin, "--target-admin-password", t.admin_password,
                           "--tune-target", "--dry-run"], env=tune.env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0 and "--tune-target" in proc.stderr and "--target-server" in proc.stderr


def check_result(tune, *extra):
    s, t = tune.source, tune.target
    proc = tune.world.az.run("postgres", "dumprestore", "check", "--databases", *extra, "--no-roles",
                             "--source-host", s.host, "--source-port", str(s.port), "--source-admin-user", s.admin,
                             "-g", RESOURCE_GROUP, "--target-server", SERVER, "--target-host", t.host,
                             "--target-port", str(t.port), "--target-admin-password", t.admin_password,
                             "--pg-bin-dir", str(bindir(18)), "-o", "json", env=tune.env(), check=False)
    return proc, {c["name"]: c for c in json.loads(proc.stdout)["checks"]}


def test_high_availability_and_read_replicas_are_warnings_with_the_commands(tune):
    tune.fresh()
    _, checks = check_result(tune, DB)
    assert checks["target-high-availability"]["status"] == checks["target-read-replicas"]["status"] == "pass"
    tune.emulated.high_availability, tune.emulated.replicas = "ZoneRedundant", ["tune16-replica1"]
    try:
        proc, checks = check_result(tune, DB)
    finally:
        tune.emulated.high_availability, tune.emulated.replicas = "Disabled", []
    assert proc.returncode == 0, proc.stderr   # warnings: the load works, only slower
    ha, rr = checks["target-high-availability"], checks["target-read-replicas"]
    assert ha["status"] == rr["status"] == "warn"
    assert f"az postgres flexible-server update -g {RESOURCE_GROUP} -n {SERVER} --high-availability Disabled" \
        in ha["fix"] and "ZoneRedundant" in ha["fix"]
    assert "tune16-replica1" in rr["message"] and "replica create" in rr["fix"]


def test_allow_extensions_adds_what_the_source_uses_to_the_allow_list(tune):
    with tune.source.connect(superuser=False) as conn:
        conn.autocommit = True
        conn.execute("CREATE DATABASE extdb")
    with tune.source.connect("extdb", superuser=False) as conn:
        conn.execute("CREATE EXTENSION citext; CREATE TABLE names (n citext PRIMARY KEY); "
                     "INSERT INTO names VALUES ('Ada'), ('Grace')")
    tune.emulated.parameters["azure.extensions"] = "hstore"
    try:
        proc, checks = check_result(tune, "extdb")
        assert proc.returncode == 1 and checks["extensions-allow-list"]["status"] == "fail"
        assert "citext" in checks["extensions-allow-list"]["message"]
        args = tune.args(tune.tmp / "ext", "--allow-extensions")
        args[args.index(DB)] = "extdb"
        dry = tune.world.az.run(*args, "--dry-run", *tune.passwords(), env=tune.env())
        assert "would add citext" in dry.stderr and tune.emulated.parameters["azure.extensions"] == "hstore"
        done = tune.world.az.run(*args, *tune.passwords(), env=tune.env(), check=False)
        assert done.returncode == 0, done.stderr
        assert tune.emulated.parameters["azure.extensions"] == "citext,hstore"
        assert_same(tune.source, tune.target, "extdb")
    finally:
        tune.emulated.parameters["azure.extensions"] = ""
        tune.target.drop_database("extdb")
