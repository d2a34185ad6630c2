"""`cutover --block-writes`: the application's roles lose their write privileges (INSERT, UPDATE, DELETE,
TRUNCATE, and column INSERT and UPDATE) on the published tables of the source, so that nothing is committed there
after the target's last catch-up; they get them back when the cutover is refused or fails, and on `cancel`.

What it can take: the grants the tables' owners gave to other roles and PUBLIC. What it cannot: a table's owner
(and every member of the owning role) and a superuser write whatever the grants say; the migration's login is
one of them, as a publication needs the ownership of its tables. Those are listed (`stillMayWrite`), not
blocked: an application that logs in as a table's owner must be stopped by its user. A grant given by a role
other than the owner is not taken either (a REVOKE by the owner does not remove it), and is listed the same way.

Each grant is written to the manifest before the first REVOKE, so that a killed cutover can still give it back;
giving back grants the recorded privileges again, which is harmless for one that was never taken."""
import psycopg
from psycopg import sql

from azext_pgdump.pg import catalog
from azext_pgdump.pg import state as run_state
from azext_pgdump.pg.online import SCHEMA

PENDING = ('revoking', 'revoked')   # the manifest's statuses of grants not given back yet
WRITES = ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')

# The publication's tables and their partitions and inheritance children (a write to a partition checks only the
# partition's grants), the heartbeat left out. %% : the queries take parameters.
_PUBLISHED = f"""
WITH RECURSIVE published AS (
  SELECT c.oid FROM pg_catalog.pg_publication_tables p
  JOIN pg_catalog.pg_namespace n ON n.nspname = p.schemaname
  JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = p.tablename
  WHERE p.pubname = %(pub)s AND p.schemaname <> '{SCHEMA}'
  UNION SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN published ON i.inhparent = published.oid)"""
# The owner's grants of write privileges to other roles than the owner and the login (which owns the tables,
# or is a member of their owner: it writes anyway). grantee 0: PUBLIC.
_GRANTS = _PUBLISHED + """
, tables AS (SELECT c.oid, c.relowner, c.relacl, format('%%I.%%I', n.nspname, c.relname) AS name,
                    n.nspname::text, c.relname::text FROM published JOIN pg_catalog.pg_class c ON c.oid = published.oid
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace),
acl AS (SELECT t.name, t.nspname, t.relname, NULL::text AS col, t.relowner, a.* FROM tables t,
               pg_catalog.aclexplode(t.relacl) a
        UNION ALL
        SELECT t.name, t.nspname, t.relname, att.attname::text, t.relowner, a.* FROM tables t
        JOIN pg_catalog.pg_attribute att ON att.attrelid = t.oid AND att.attnum > 0 AND NOT att.attisdropped,
        pg_catalog.aclexplode(att.attacl) a)
SELECT acl.name, acl.nspname, acl.relname, acl.col, r.rolname, acl.privilege_type, acl.is_grantable FROM acl
LEFT JOIN pg_catalog.pg_roles r ON r.oid = acl.grantee
WHERE acl.privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE') AND acl.grantor = acl.relowner
  AND acl.grantee <> acl.relowner AND (acl.grantee = 0 OR r.rolname <> current_user)
ORDER BY 1, 4 NULLS FIRST, 5 NULLS FIRST, 6"""
# Who may still write to a published table, whatever was revoked: superusers, the owners and their members
# (a member may SET ROLE to the owner even without inheriting), and grants the block could not take.
_STILL = _PUBLISHED + """
SELECT r.rolname, count(*)::int,
       CASE WHEN r.rolsuper THEN 'superuser'
            WHEN bool_or(pg_catalog.pg_has_role(r.oid, c.relowner, 'MEMBER')) THEN 'owner, or member of the owner'
            ELSE 'a grant from a role other than the owner' END
FROM pg_catalog.pg_roles r, published JOIN pg_catalog.pg_class c ON c.oid = published.oid
WHERE r.rolcanlogin AND (r.rolsuper OR pg_catalog.pg_has_role(r.oid, c.relowner, 'MEMBER')
      OR pg_catalog.has_table_privilege(r.oid, c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')
      OR pg_catalog.has_any_column_privilege(r.oid, c.oid, 'INSERT, UPDATE'))
GROUP BY r.rolname, r.rolsuper ORDER BY 1"""


def pending(made: dict) -> list:
    """The grants an earlier `--block-writes` cutover took and has not given back (it was killed)."""
    block = made.get('writeBlock') or {}
    return block.get('grants', []) if block.get('status') in PENDING else []


def record(source, work_dir, database: str, made: dict) -> list:
    """The grants to take (an earlier, killed cutover's still taken among them), written to the manifest."""
    with catalog.connect(source, database) as conn:
        found = [_grant(row) for row in conn.execute(_GRANTS, {'pub': made['publication']}).fetchall()]
    earlier = pending(made)
    grants = earlier + [g for g in found if g not in earlier]
    run_state.online_write_block(work_dir, database, {'status': 'revoking', 'grants': grants})
    return grants


def take(source, work_dir, database: str, made: dict, grants: list) -> dict:
    """REVOKE the recorded grants (one already taken stays taken), then wait until the transactions writing
    to those tables have ended. Returns what was taken, who still may write, and the statements that give
    the privileges back."""
    with catalog.connect(source, database) as conn:
        with conn.transaction():   # all or none
            for g in grants:
                conn.execute(_statement('REVOKE', g))
        run_state.online_write_block(work_dir, database, {'status': 'revoked', 'grants': grants})
        _wait_for_writers(conn, sorted({tuple(g['name']) for g in grants}))
        still = [{'role': r[0], 'tables': r[1], 'why': r[2]}
                 for r in conn.execute(_STILL, {'pub': made['publication']}).fetchall()]
        back = [_statement('GRANT', g).as_string(conn) + ';' for g in grants]
    return {'revoked': grants, 'stillMayWrite': still, 'giveBack': back}


def _grant(row) -> dict:
    """One privilege: `table` as the catalog quotes it (to read); `name` (schema, table) and `column` as they
    are named, quoted again whenever they are used, since a give-back reads them from the manifest."""
    table, schema, relname, column, grantee, privilege, grantable = row
    return {'table': table, 'name': [schema, relname], 'column': column, 'grantee': grantee, 'privilege': privilege,
            'grantable': grantable}


def _wait_for_writers(conn, tables: list) -> None:
    """A transaction that has written to a table before the REVOKE may go on writing to it: privileges are
    checked at each statement, but against the catalog as the session last read it, which a session that holds
    its lock on the table already need not read again. A SHARE lock on each table, taken and let go at once,
    waits for every such transaction to end (as long as the login's lock_timeout, --timeout)."""
    for table in tables:
        try:
            with conn.transaction():
                conn.execute(sql.SQL('LOCK TABLE {} IN SHARE MODE').format(sql.Identifier(*table)))
        except psycopg.errors.UndefinedTable:
            continue   # dropped since an earlier cutover took its grants
        except psycopg.errors.LockNotAvailable as err:
            raise TimeoutError(f'a transaction that began before the write block still writes to '
                               f'{".".join(table)} after the lock timeout: {str(err).strip()}') from err


def _statement(verb: str, grant: dict):
    """GRANT or REVOKE one privilege (grantee None: PUBLIC)."""
    if grant['privilege'] not in WRITES:
        raise ValueError(f"not a write privilege: {grant['privilege']!r}")
    what = sql.SQL(grant['privilege'])
    if grant['column']:
        what = sql.SQL('{} ({})').format(what, sql.Identifier(grant['column']))
    table = sql.Identifier(*grant['name'])
    who = sql.Identifier(grant['grantee']) if grant['grantee'] else sql.SQL('PUBLIC')
    if verb == 'REVOKE':
        return sql.SQL('REVOKE {} ON TABLE {} FROM {}').format(what, table, who)
    option = sql.SQL(' WITH GRANT OPTION') if grant['grantable'] else sql.SQL('')
    return sql.SQL('GRANT {} ON TABLE {} TO {}{}').format(what, table, who, option)


def give_back(source, work_dir, database: str, grants: list) -> list:
    """Grant again what a block took; a table or role dropped since is skipped. Returns what was not given
    back, and why."""
    skipped = []
    with catalog.connect(source, database) as conn:
        for g in grants:
            try:
                with conn.transaction():
                    conn.execute(_statement('GRANT', g))
            except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedObject) as err:
                skipped.append(dict(g, error=str(err).strip()))
    run_state.online_write_block(work_dir, database, {'status': 'given back', 'grants': grants})
    return skipped


def statements(source, database: str, grants: list) -> list:
    """The GRANT statements that give the privileges back by hand (after a cutover, which keeps them taken)."""
    with catalog.connect(source, database) as conn:
        return [_statement('GRANT', g).as_string(conn) + ';' for g in grants]


def keep(work_dir, database: str, grants: list) -> None:
    run_state.online_write_block(work_dir, database, {'status': 'kept', 'grants': grants})
