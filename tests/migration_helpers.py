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
    out = subprocess.run(
        [str(bindir(18) / "pg_dump"), "--schema-only", "--restrict-key=compare",
         f"--dbname={_conninfo(pg, dbname)}"], env=dict(os.environ, PGPASSWORD=pg.superuser_password),
        capture_output=True, text=True, timeout=120, check=True).stdout
    return "\n".join(line for line in out.splitlines()
                     if line.strip() and not re.match(r"-- Dumped (from|by)", line))


def _conninfo(pg, dbname):
    return Endpoint(host=pg.host, port=pg.port, user="postgres").conninfo(dbname)


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


def assert_same(src_pg, tgt_pg, dbname):
    assert table_counts(tgt_pg, dbname) == table_counts(src_pg, dbname)
    assert facts(tgt_pg, dbname) == facts(src_pg, dbname)
    source, target = schema_dump(src_pg, dbname), schema_dump(tgt_pg, dbname)
    if src_pg.major != tgt_pg.major:  # newer servers deparse view bodies differently (no table qualifiers)
        source, target = without_view_bodies(source), without_view_bodies(target)
    diff = list(difflib.unified_diff(source.splitlines(), target.splitlines(), "source", "target", lineterm=""))
    assert not diff, "\n".join(diff[:80])


def result_of(proc) -> dict:
    return json.loads(proc.stdout)
