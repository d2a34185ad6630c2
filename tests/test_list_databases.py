"""`az postgres dumprestore list-databases` through the real az and the ARM emulator."""
import pytest

from tests.infra.arm_emulator import SUBSCRIPTION
from tests.infra.world import RESOURCE_GROUP

CMD = ("postgres", "dumprestore", "list-databases")


@pytest.fixture(scope="module")
def databases(world):
    """A database only the Flexible server has and one only the Single server has."""
    world.flexible.pg.execute('CREATE DATABASE "flex only db"')
    world.single.pg.execute("CREATE DATABASE single_only_db")
    yield
    world.flexible.pg.execute('DROP DATABASE "flex only db"')
    world.single.pg.execute("DROP DATABASE single_only_db")


def names(rows):
    return {row["name"] for row in rows}


@pytest.mark.parametrize("kind,own,other", [("flexible", "flex only db", "single_only_db"),
                                            ("single", "single_only_db", "flex only db")])
def test_lists_the_real_databases_with_the_kind_detected(az, world, databases, kind, own, other):
    server = getattr(world, kind)
    rows = az.json(*CMD, "-g", RESOURCE_GROUP, "-s", server.name)
    assert own in names(rows) and other not in names(rows)
    assert {"postgres", "azure_maintenance", "azure_sys"} <= names(rows)
    assert {row["serverType"] for row in rows} == {kind}
    by_name = {row["name"]: row for row in rows}
    assert by_name[own]["migratable"] is True and by_name["azure_sys"]["migratable"] is False
    assert by_name[own]["id"] == f"{server.id}/databases/{own}"


@pytest.mark.parametrize("kind", ["flexible", "single"])
def test_ids_and_explicit_server_type(az, world, databases, kind):
    server = getattr(world, kind)
    by_id = az.json(*CMD, "--ids", server.id)
    by_type = az.json(*CMD, "-g", RESOURCE_GROUP, "--server-name", server.name, "--server-type", kind)
    assert names(by_id) == names(by_type) == {r[0] for r in server.pg.execute(
        "SELECT datname FROM pg_database WHERE datname <> 'template0'")}


def test_explicit_server_type_sends_one_lookup(az, world):
    before = len(world.emulator.requests)
    az.json(*CMD, "-g", RESOURCE_GROUP, "-s", world.single.name, "--server-type", "single")
    paths = [path for _, path, _ in world.emulator.requests[before:]]
    assert not any("/flexibleServers/" in p for p in paths)


def test_table_tsv_and_query(az, world, databases):
    table = az.run(*CMD, "-g", RESOURCE_GROUP, "-s", world.flexible.name, "-o", "table").stdout
    assert "Migrated by default" in table.splitlines()[0] and "flex only db" in table
    tsv = az.run(*CMD, "-g", RESOURCE_GROUP, "-s", world.flexible.name,
                 "--query", "[?migratable].name", "-o", "tsv").stdout
    assert sorted(tsv.split("\n")[:-1]) == ["flex only db", "postgres"]


def test_resource_group_from_az_defaults(az, world):
    env = dict(az.env, AZURE_DEFAULTS_GROUP=RESOURCE_GROUP)
    rows = az.json(*CMD, "-s", world.flexible.name, env=env)
    assert "postgres" in names(rows)


def error_of(az, *args):
    proc = az.run(*CMD, *args, check=False)
    assert proc.returncode != 0, proc.stdout
    assert proc.stdout == ""
    return proc.stderr


def test_unknown_server_names_server_and_group(az):
    err = error_of(az, "-g", RESOURCE_GROUP, "-s", "nosuchserver")
    assert "nosuchserver" in err and RESOURCE_GROUP in err
    assert "Flexible Server or Single Server" in err
    assert "az postgres flexible-server list" in err  # the recommendation


def test_unknown_resource_group(az, world):
    err = error_of(az, "-g", "no-such-rg", "-s", world.flexible.name)
    assert "Resource group 'no-such-rg' was not found" in err and "az group list" in err


@pytest.mark.parametrize("bad_id", [
    "not-an-id",
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Sql/servers/x",
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.DBforPostgreSQL/"
    "flexibleServers/x/databases/y",
])
def test_malformed_resource_id(az, world, bad_id):
    before = len(world.emulator.requests)
    err = error_of(az, "--ids", bad_id)
    assert bad_id in err and "flexible-server show" in err
    assert len(world.emulator.requests) == before  # refused before any request


def test_ids_and_server_name_are_exclusive(az, world):
    err = error_of(az, "--ids", world.flexible.id, "-s", world.flexible.name)
    assert "either --ids or --server-name" in err


def test_missing_resource_group_names_the_default(az, world):
    err = error_of(az, "-s", world.flexible.name)
    assert "az config set defaults.group" in err


def test_help_has_examples(az):
    out = az.run(*CMD, "-h").stdout
    assert "Examples" in out and "--server-type" in out and "--ids" in out
    assert "az postgres dumprestore list-databases -g myresourcegroup -s mydemoserver" in out
