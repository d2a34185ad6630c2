"""The roles clean-up works on parsed statements, not lines (pure logic, no server)."""
from azext_pgdump.pg.roles import clean
from azext_pgdump.pg.sqlsplit import split

DUMPALL = r"""--
-- PostgreSQL database cluster dump
--

\restrict abcdef

SET default_transaction_read_only = off;

CREATE ROLE "app owner";
ALTER ROLE "app owner" WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS;
CREATE ROLE azure_pg_admin;
ALTER ROLE azure_pg_admin WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB NOLOGIN NOREPLICATION NOBYPASSRLS;
CREATE ROLE azure_superuser;
ALTER ROLE azure_superuser WITH SUPERUSER INHERIT NOCREATEROLE NOCREATEDB NOLOGIN NOREPLICATION NOBYPASSRLS;
CREATE ROLE "azure_pg_admin fan";
ALTER ROLE "azure_pg_admin fan" WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN PASSWORD 'SCRAM-SHA-256$4096:x' NOREPLICATION BYPASSRLS;
COMMENT ON ROLE "azure_pg_admin fan" IS 'not a service role; ALTER ROLE replication; azuresu';
CREATE ROLE pgadmin;
ALTER ROLE pgadmin WITH NOSUPERUSER INHERIT CREATEROLE CREATEDB LOGIN NOREPLICATION NOBYPASSRLS;
CREATE ROLE replication;
ALTER ROLE replication WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB NOLOGIN REPLICATION NOBYPASSRLS;
ALTER ROLE "app owner" SET search_path TO 'a;b';
GRANT azure_pg_admin TO pgadmin WITH INHERIT TRUE GRANTED BY azure_superuser;
GRANT "app owner" TO "azure_pg_admin fan" WITH INHERIT TRUE GRANTED BY "some ""quoted"" role";
GRANT pg_read_all_data TO "app owner";

\unrestrict abcdef
"""


def test_service_roles_and_superuser_attributes_go_other_roles_stay():
    result = clean(DUMPALL, existing_roles={"pgadmin"}, target_login="pgadmin")
    assert result.created == ["app owner", "azure_pg_admin fan"]
    assert result.skipped_service == ["azure_pg_admin", "azure_superuser", "replication"]
    assert result.skipped_existing == ["pgadmin"]
    assert result.need_password == ["app owner"]
    statements = [s.text for s in split(result.sql)]
    assert 'ALTER ROLE "app owner" WITH INHERIT NOCREATEROLE NOCREATEDB LOGIN' in statements
    assert ("ALTER ROLE \"azure_pg_admin fan\" WITH INHERIT NOCREATEROLE NOCREATEDB LOGIN PASSWORD "
            "'SCRAM-SHA-256$4096:x'") in statements
    # A comment that mentions service roles is kept whole: the statement is about a user role.
    assert "COMMENT ON ROLE \"azure_pg_admin fan\" IS 'not a service role; ALTER ROLE replication; azuresu'" \
        in statements
    assert "ALTER ROLE \"app owner\" SET search_path TO 'a;b'" in statements
    assert 'GRANT "app owner" TO "azure_pg_admin fan" WITH INHERIT TRUE' in statements
    assert not any("pg_read_all_data" in s or "GRANT azure_pg_admin" in s for s in statements)
    assert not any(s.startswith("\\") for s in statements)
    for attr in ("NOSUPERUSER", "NOBYPASSRLS", "BYPASSRLS", "NOREPLICATION"):
        assert not any(f" {attr}" in s for s in statements if s.startswith("ALTER ROLE"))
    # The target login becomes a member of each role it creates, so owners can be restored.
    assert 'GRANT "app owner" TO "pgadmin"' in statements


def test_roles_existing_on_target_are_left_alone():
    result = clean(DUMPALL, existing_roles={"pgadmin", "app owner"}, target_login="pgadmin")
    assert "app owner" in result.skipped_existing
    assert not any(s.text.startswith('ALTER ROLE "app owner"') for s in split(result.sql))


def test_split_keeps_semicolons_in_strings_identifiers_and_dollar_quotes():
    script = "SELECT 'a;b'; SELECT \"x;y\" FROM t; CREATE FUNCTION f() AS $q$ a; b $q$; -- c;\n SELECT 1"
    assert [s.text for s in split(script)] == [
        "SELECT 'a;b'", 'SELECT "x;y" FROM t', "CREATE FUNCTION f() AS $q$ a; b $q$", "SELECT 1"]


def test_entra_login_is_kept_whole_and_existing_roles_file_tolerates_crlf(tmp_path):
    from azext_pgdump.pg.inprocess import clean_roles_file
    from azext_pgdump.pg.steps import roles_steps
    from azext_pgdump.pg.endpoint import Endpoint
    from azext_pgdump.pg.tools import Toolset
    tools = Toolset(bindir=tmp_path, version="18.6", major=18)
    entra = Endpoint(host="h", user="alice@contoso.com", kind="flexible")
    single = Endpoint(host="h", user="admin@srv", kind="single")
    assert "--target-login=alice@contoso.com" in roles_steps(tools, entra, entra, tmp_path, True)[2].argv
    assert "--target-login=admin" in roles_steps(tools, single, single, tmp_path, True)[2].argv
    (tmp_path / "raw.sql").write_text(DUMPALL)
    (tmp_path / "existing.txt").write_bytes(b"\xef\xbb\xbfpgadmin\r\napp owner\r\n")
    summary = clean_roles_file(tmp_path / "raw.sql", tmp_path / "out.sql", tmp_path / "existing.txt", "pgadmin")
    assert summary["skippedExisting"] == ["app owner", "pgadmin"]
    assert (tmp_path / "out.sql").stat().st_mode & 0o777 == 0o600
