"""Helpers for migration tests: a rich source, password files, and source/target comparison."""
import difflib
import json
import os
import re
import subprocess
from pathlib import Path

from psycopg import sql

from azext_pgdump.pg.endpoint import Endpoint
from tests.infra.pgbin import bindir

SQL = Path(__file__).parent / "sql"
SECOND_DB = 'crm "ü" db'


def create_rich_source(pg, admin_user=None):
    """Roles, a rich database `appdb` and a small second database, all made by the Azure-like admin."""
    with pg.connect(superuser=False) as conn:
        conn.execute("CREATE ROLE app_owner NOLOGIN")
        conn.execute("CREATE ROLE app_reader LOGIN PASSWORD 'reader-secret-1'")
        conn.execute("GRANT app_owner TO " + pg.admin)
        conn.execute("COMMENT ON ROLE app_reader IS 'reads; not azure_superuser'")
        conn.execute("CREATE DATABASE appdb")
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(SECOND_DB)))
    with pg.connect("appdb", superuser=False) as conn:
        conn.execute((SQL / "rich_source.sql").read_text())
    with pg.connect(SECOND_DB, superuser=False) as conn:
        conn.execute("CREATE TABLE notes (id int PRIMARY KEY, body text); "
                     "INSERT INTO notes SELECT g, repeat('n', g) FROM generate_series(1, 50) g")


def create_app_owned(pg):
    """`shop`, owned by the application's role, with database grants, settings and a comment, objects of
    several roles, default privileges, an extension (created by the service's superuser, as on Azure)
    and a large object. Works on PostgreSQL 10 and 11."""
    with pg.connect(superuser=False) as conn:
        for statement in _statements((SQL / "app_owned_roles.sql").read_text()):
            conn.execute(statement)
    pg.execute("CREATE EXTENSION citext", dbname="shop")
    with pg.connect("shop", superuser=False) as conn:
        conn.execute((SQL / "app_owned.sql").read_text())


def admin_database(pg, name, script):
    """A database made by the Azure-like admin, with `script` run in it as the admin."""
    with pg.connect(superuser=False) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with pg.connect(name, superuser=False) as conn:
        conn.execute(script)


def create_vault(pg):
    """`vault`: a table of a role the admin is not a member of, so pg_dump cannot read it as the admin."""
    with pg.connect(superuser=False) as conn:
        conn.execute("CREATE ROLE vault_owner NOLOGIN")
        conn.execute("CREATE DATABASE vault")
    with pg.connect("vault") as conn:  # made by the role itself; the admin was never given it
        conn.execute("SET ROLE vault_owner; CREATE TABLE public.secrets (id int PRIMARY KEY, body text); "
                     "INSERT INTO public.secrets SELECT g, md5(g::text) FROM generate_series(1, 40) g; RESET ROLE")


def _statements(script: str) -> list:
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";\n") if s.strip()]


def database_properties(pg, dbname) -> dict:
    """What pg_dump leaves to whoever creates the database: owner, grants, settings, comment."""
    with pg.connect() as conn:
        owner, comment = conn.execute("SELECT pg_get_userbyid(datdba), shobj_description(oid, 'pg_database') "
                                      "FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        acl = conn.execute(
            "SELECT coalesce(nullif(pg_get_userbyid(a.grantee), '-'), 'PUBLIC'), a.privilege_type, a.is_grantable "
            "FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a "
            "WHERE d.datname = %s ORDER BY 1, 2", (dbname,)).fetchall()
        settings = conn.execute(
            "SELECT coalesce(pg_get_userbyid(nullif(s.setrole, 0)), ''), unnest(s.setconfig) "
            "FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = %s "
            "ORDER BY 1, 2", (dbname,)).fetchall()
    return {"owner": owner, "comment": comment, "acl": acl, "settings": settings}


def public_schema_privileges(pg, dbname) -> set:
    """What PUBLIC may do in schema public (pre-15 servers: USAGE and CREATE)."""
    with pg.connect(dbname) as conn:
        return {r[0] for r in conn.execute(
            "SELECT a.privilege_type FROM pg_namespace n, aclexplode(n.nspacl) a "
            "WHERE n.nspname = 'public' AND a.grantee = 0").fetchall()}


def write_pgpass(path: Path, entries) -> Path:
    """entries: (host, port, user, password). libpq reads this file; no password reaches argv."""
    path.write_text("".join(f"{h}:{p}:*:{u}:{pw}\n" for h, p, u, pw in entries))
    path.chmod(0o600)
    return path


def table_counts(pg, dbname) -> dict:
    with pg.connect(dbname) as conn:
        tables = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg_toast%'").fetchall()
        return {f"{s}.{t}": conn.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(
            sql.Identifier(s), sql.Identifier(t))).fetchone()[0] for s, t in tables}


def facts(pg, dbname) -> dict:
    with pg.connect(dbname) as conn:
        return {
            "sequences": conn.execute("SELECT schemaname, sequencename, last_value FROM pg_sequences "
                                      "ORDER BY 1, 2").fetchall(),
            "large_objects": conn.execute("SELECT count(*), coalesce(sum(length(lo_get(oid))), 0) "
                                          "FROM pg_largeobject_metadata").fetchone(),
        }


def schema_dump(pg, dbname) -> str:
    """pg_dump --schema-only, less what differs between servers and is not the database's own: the public
    schema's entries (owned by the bootstrap superuser before 15, by pg_database_owner since; its
    privileges are compared by public_schema_privileges) and session SETs."""
    out = subprocess.run(
        [str(bindir(18) / "pg_dump"), "--schema-only", "--restrict-key=compare",
         f"--dbname={_conninfo(pg, dbname)}"], env=dict(os.environ, PGPASSWORD=pg.superuser_password),
        capture_output=True, text=True, timeout=120, check=True).stdout
    out = re.sub(r"--\n-- Name: (SCHEMA )?public; Type: (SCHEMA|ACL|COMMENT); Schema: -; Owner: \S+\n--\n.*?(?=\n--\n)",
                 "", out, flags=re.S)
    return "\n".join(line for line in out.splitlines()
                     if line.strip() and not re.match(r"-- Dumped (from|by)|SET |SELECT pg_catalog.set_config", line))


def _conninfo(pg, dbname):
    return Endpoint(host=pg.host, port=pg.port, user=pg.bootstrap).conninfo(dbname)


def without_view_bodies(dump: str) -> str:
    out, in_view = [], False
    for line in dump.splitlines():
        if line.startswith(("CREATE VIEW", "CREATE MATERIALIZED VIEW")):
            in_view = True
            out.append(line)
        elif not in_view:
            out.append(line)
        if in_view and line.rstrip().endswith(";"):
            in_view = False
    return "\n".join(out)


def same_spelling(dump: str) -> str:
    """What servers of different majors write differently for the same object: 12+ say EXECUTE FUNCTION
    for a trigger's EXECUTE PROCEDURE, 14+ mark procedure arguments IN."""
    dump = dump.replace(" EXECUTE PROCEDURE ", " EXECUTE FUNCTION ")
    return re.sub(r"^((?:CREATE|ALTER) PROCEDURE [^(]+\()IN ", r"\1", dump, flags=re.M)


def assert_same(src_pg, tgt_pg, dbname):
    assert table_counts(tgt_pg, dbname) == table_counts(src_pg, dbname)
    assert facts(tgt_pg, dbname) == facts(src_pg, dbname)
    source, target = schema_dump(src_pg, dbname), schema_dump(tgt_pg, dbname)
    if src_pg.major != tgt_pg.major:  # newer servers deparse view bodies differently (no table qualifiers)
        source, target = same_spelling(without_view_bodies(source)), same_spelling(without_view_bodies(target))
    diff = list(difflib.unified_diff(source.splitlines(), target.splitlines(), "source", "target", lineterm=""))
    assert not diff, "\n".join(diff[:80])
    assert public_schema_privileges(tgt_pg, dbname) == public_schema_privileges(src_pg, dbname)


def result_of(proc) -> dict:
    return json.loads(proc.stdout)


def az_python(proc) -> int:
    """The Python process of an az started with subprocess.Popen (the az launcher may be a shell script): the
    one to kill to kill az."""
    pids = {p for p in _descendants(proc.pid) | {proc.pid} if b"azure.cli" in _cmdline(p)}
    # A child forked but not yet exec'd still shows az's command line: the one whose parent is not az.
    top = [p for p in pids if _parent(p) not in pids]
    assert len(top) == 1, pids
    return top[0]


def _cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _parent(pid):
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _descendants(pid):
    found, frontier = set(), [pid]
    while frontier:
        parent = frontier.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):  # every thread's children
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            for kid in kids:
                if kid not in found:
                    found.add(kid)
                    frontier.append(kid)
    return found
