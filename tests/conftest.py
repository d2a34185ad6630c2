"""Session fixtures: one set of real servers, one ARM emulator and one logged-in az for the whole run."""
from contextlib import ExitStack

import pytest

from tests.infra.world import start_world
import json

from tests.infra.pgbin import bindir
from tests.infra.world import RESOURCE_GROUP
from tests.migration_helpers import create_app_owned, create_rich_source, create_vault


@pytest.fixture(scope="session")
def world():
    with ExitStack() as stack:
        yield start_world(stack)


@pytest.fixture(scope="session")
def az(world):
    return world.az


@pytest.fixture(scope="session")
def rich_source(world):
    """What a real Single Server holds, made once on the PostgreSQL 11 one: the rich `appdb`, a second
    database, the application-owned `shop` and `vault`, whose table the admin cannot read until it
    applies the fix `check` names (as a user would); `shop` on the PostgreSQL 10 one too. The Flexible
    targets allow-list citext, as a user does when check asks for it."""
    create_rich_source(world.single.pg)
    create_app_owned(world.single.pg)
    create_app_owned(world.single10.pg)
    create_vault(world.single.pg)
    for server in (world.flexible, world.flexible16):
        server.parameters["azure.extensions"] = "citext"
    world.vault_check = _check_vault(world)
    readable = [c for c in world.vault_check["checks"] if c["name"] == "source-readable"]
    assert readable, [c["message"][:300] for c in world.vault_check["checks"]]
    fix = readable[0]["fix"]
    with world.single.pg.connect(superuser=False) as conn:
        conn.execute(fix.split(": ", 1)[1])
    return world.single.pg


def _check_vault(world):
    gw, flex = world.gateway, world.flexible.pg
    proc = world.az.run("postgres", "dumprestore", "check", "-g", RESOURCE_GROUP, "--databases", "vault",
                        "--source-server", "single1", "--source-host", gw.host, "--source-port", str(gw.port),
                        f"--source-admin-password={world.single.pg.admin_password}",
                        "--target-server", "flex1", "--target-host", flex.host, "--target-port", str(flex.port),
                        f"--target-admin-password={flex.admin_password}", "--pg-bin-dir", str(bindir(18)),
                        "-o", "json", check=False)
    assert proc.returncode == 1, proc.stderr
    return json.loads(proc.stdout)
