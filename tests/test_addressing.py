"""Every way of naming a server resolves to the right endpoint, and every wrong one to a specific error."""
import socket
import time

import pytest

from tests.infra.arm_emulator import OSSRDBMS
from tests.infra.pgbin import bindir
from tests.infra.world import RESOURCE_GROUP

SUFFIX = "postgres.azext-pgdump.test"


@pytest.fixture(scope="module")
def plan(world, tmp_path_factory):
    """`run --dry-run` between the Single and the Flexible server; returns (process, plan or None)."""
    tmp = tmp_path_factory.mktemp("addr")
    world.single.pg.execute("CREATE DATABASE addrdb OWNER pgadmin")
    gw, flex = world.gateway, world.flexible.pg
    counter = iter(range(1000))

    def dry_run(source, target, *extra, env=None):
        args = ["postgres", "dumprestore", "run", "--dry-run", "--databases", "addrdb",
                "--pg-bin-dir", str(bindir(18)), "--work-dir", str(tmp / f"wd{next(counter)}"),
                *source, *target, *extra, "-o", "json"]
        proc = world.az.run(*args, check=False, env=env)
        for secret in (world.single.pg.admin_password, flex.admin_password):
            assert secret not in proc.stdout + proc.stderr
        return proc, (__import__("json").loads(proc.stdout) if proc.returncode == 0 else None)

    dry_run.source_conn = ["--source-host", gw.host, "--source-port", str(gw.port),
                           "--source-admin-password", world.single.pg.admin_password]
    dry_run.target_conn = ["--target-host", flex.host, "--target-port", str(flex.port),
                           "--target-admin-password", flex.admin_password]
    yield dry_run
    world.single.pg.drop_database("addrdb")


def sides(result):
    return result["source"], result["target"]


@pytest.mark.parametrize("form", ["name", "resource-id", "fqdn"])
def test_each_addressing_form_resolves_to_the_right_endpoint(world, plan, form):
    if form == "name":
        names = [["--source-server", "single1", "-g", RESOURCE_GROUP], ["--target-server", "flex1"]]
    elif form == "resource-id":
        names = [["--source-server", world.single.id], ["--target-server", world.flexible.id]]
    else:  # the resource group of an FQDN is found through ARM
        names = [["--source-server", f"single1.{SUFFIX}"], ["--target-server", f"flex1.{SUFFIX}"]]
    proc, result = plan(names[0] + plan.source_conn, names[1] + plan.target_conn,
                        *(["--target-resource-group", RESOURCE_GROUP] if form == "name" else []))
    assert proc.returncode == 0, proc.stderr
    source, target = sides(result)
    assert source == {"server": "single1 (Single Server)", "kind": "single", "user": "pgadmin@single1", "major": 11}
    assert target == {"server": "flex1 (Flexible Server)", "kind": "flexible", "user": "pgadmin", "major": 18}


@pytest.mark.parametrize("user", ["pgadmin", "pgadmin@single1"])
def test_single_server_login_gets_its_suffix_once(world, plan, user):
    proc, result = plan(["--source-server", "single1", "--source-admin-user", user] + plan.source_conn,
                        ["--target-server", "flex1"] + plan.target_conn, "-g", RESOURCE_GROUP)
    assert proc.returncode == 0, proc.stderr
    assert result["source"]["user"] == "pgadmin@single1"


def test_plain_hosts_never_call_arm(world, plan):
    vm = world.vm_pg
    before = len(world.emulator.requests)
    proc, result = plan(["--source-host", vm.host, "--source-port", str(vm.port), "--source-admin-user", vm.admin,
                         "--source-admin-password", vm.admin_password],
                        ["--target-host", vm.host, "--target-port", str(vm.port), "--target-admin-user", vm.admin,
                         "--target-admin-password", vm.admin_password])
    # Both sides connected without ARM; the plan then refuses a migration into its own source.
    assert proc.returncode != 0 and "are the same server" in proc.stderr
    assert world.emulator.requests[before:] == []


def test_entra_sign_in_uses_a_token_for_the_postgresql_resource(world, plan):
    world.flexible.pg.execute("CREATE ROLE entra_user LOGIN CREATEDB CREATEROLE IN ROLE azure_pg_admin")
    world.emulator.entra_logins.append((world.flexible.pg, "entra_user"))
    try:
        proc, result = plan(["--source-server", "single1", "-g", RESOURCE_GROUP] + plan.source_conn,
                            ["--target-server", "flex1", "--target-host", world.flexible.pg.host,
                             "--target-port", str(world.flexible.pg.port), "--target-auth-type", "entra",
                             "--target-admin-user", "entra_user"])
    finally:
        world.emulator.entra_logins.clear()
    assert proc.returncode == 0, proc.stderr
    assert result["target"]["user"] == "entra_user"
    assert OSSRDBMS in [r.rstrip("/") for r in world.emulator.token_resources]


@pytest.mark.parametrize("source,message,advice", [
    (["--source-server", "nosuch", "--source-resource-group", RESOURCE_GROUP], "No Flexible Server or Single Server named 'nosuch'",
     "az postgres flexible-server list"),
    (["--source-server", "single1", "--source-resource-group", "nosuch-rg"], "Resource group 'nosuch-rg' was not found", "az group list"),
    (["--source-server", "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Web/sites/s"],
     "is not the ID of an Azure Database for PostgreSQL server", "az postgres flexible-server show"),
    (["--source-server", f"nosuch.{SUFFIX}"], "No server named 'nosuch' was found in the subscription",
     "--subscription"),
])
def test_wrong_server_references_get_specific_errors(world, plan, source, message, advice, tmp_path):
    proc, _ = plan(source + plan.source_conn,
                   ["--target-server", "flex1", "--target-resource-group", RESOURCE_GROUP] + plan.target_conn)
    assert proc.returncode != 0 and proc.stdout == ""
    assert message in proc.stderr and advice in proc.stderr


def test_wrong_password_is_a_connection_error_with_advice(world, plan):
    proc, _ = plan(["--source-server", "single1", "-g", RESOURCE_GROUP, "--source-host", world.gateway.host,
                    "--source-port", str(world.gateway.port), "--source-admin-password", "wrong-password"],
                   ["--target-server", "flex1"] + plan.target_conn)
    assert proc.returncode != 0
    assert "password authentication failed" in proc.stderr and "--source-admin-password" in proc.stderr


def test_unreachable_host_fails_within_the_connect_timeout(world, plan):
    """A listener that never answers: libpq's connect_timeout bounds the wait."""
    silent = socket.create_server(("127.0.0.1", 0), backlog=8)
    try:
        started = time.monotonic()
        proc, _ = plan(["--source-host", "127.0.0.1", "--source-port", str(silent.getsockname()[1]),
                        "--source-admin-user", "someone", "--source-admin-password", "x"],
                       ["--target-server", "flex1", "-g", RESOURCE_GROUP] + plan.target_conn)
        elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert proc.returncode != 0 and "timeout" in proc.stderr.lower()
    assert elapsed < 60
    assert not world.flexible.firewall_rules and not world.single.firewall_rules
