"""The test servers behave like Azure Database for PostgreSQL where the tool depends on it."""
import psycopg
import pytest


@pytest.fixture(params=["flexible", "single"])
def server(request, world):
    return getattr(world, request.param)


def admin_conninfo(server, user):
    info = server.pg.conninfo(superuser=False)
    info.update(host=server.connect_host, port=server.connect_port, user=user)
    return info


def admin_user(server):
    return f"{server.pg.admin}@{server.name}" if server.kind == "single" else server.pg.admin


def test_flexible_and_single_run_different_majors(world):
    majors = {world.flexible.pg.version_num() // 10000, world.single.pg.version_num() // 10000}
    assert len(majors) == 2


def test_admin_is_not_superuser_but_can_create_databases_and_roles(server):
    with psycopg.connect(**admin_conninfo(server, admin_user(server))) as conn:
        row = conn.execute(
            "SELECT current_user, rolsuper, rolcreatedb, rolcreaterole, "
            "pg_has_role(current_user, 'azure_pg_admin', 'MEMBER') FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
    assert row == (server.pg.admin, False, True, True, True)


def test_tls_is_required(server):
    info = admin_conninfo(server, admin_user(server))
    info.update(sslmode="disable")
    info.pop("sslrootcert")
    with pytest.raises(psycopg.OperationalError, match="SSL|no encryption"):
        psycopg.connect(**info)


def test_wrong_password_is_refused(server):
    info = admin_conninfo(server, admin_user(server))
    info["password"] = "not-the-password"
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(**info)


def test_single_server_gateway_requires_user_at_servername(world):
    single = world.single
    with pytest.raises(psycopg.OperationalError, match="user@hostname|<username@hostname>"):
        psycopg.connect(**admin_conninfo(single, single.pg.admin))
    with pytest.raises(psycopg.OperationalError, match="username@hostname"):
        psycopg.connect(**admin_conninfo(single, f"{single.pg.admin}@otherserver"))
    assert single.pg.admin in world.gateway.refused


def test_flexible_server_takes_the_bare_login(world):
    flexible = world.flexible
    with psycopg.connect(**admin_conninfo(flexible, flexible.pg.admin)) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == flexible.pg.admin
