"""Checks that depend on the pair of majors, from PostgreSQL's "Migration to version N" notes: contrib modules
a newer major removed, columns of the server's views that a newer major dropped, and CREATEROLE's narrower
powers on 16+ targets. Read-only.

What pg_upgrade also checks but a dump and restore does not meet (reg* and sql_identifier columns, whose
stored form changes; the `unknown` type of 9.6 and older) is left out on purpose: pg_dump writes their values
as text, which the target parses again."""
from psycopg import sql

from azext_pgdump.pg import catalog
from azext_pgdump.pg.preflight import Check, _ok
from azext_pgdump.pg.roles import is_service_role

# Contrib modules PostgreSQL removed: pg_dump writes their CREATE EXTENSION, which fails on a target of that major
# or newer, and every column, view and function that uses one of their types or functions fails with it.
REMOVED_EXTENSIONS = {
    'tsearch2': (10, 'the text search built in since 8.3 replaces it: move columns and functions to the '
                     'pg_catalog types and functions (tsvector, to_tsvector, ...), then DROP EXTENSION tsearch2'),
    'chkpass': (11, "store a hash instead: pgcrypto's crypt(password, gen_salt('bf')) in a text column, then "
                    'DROP EXTENSION chkpass'),
    'adminpack': (17, "only pgAdmin's file functions use it, no data does: DROP EXTENSION adminpack"),
    'old_snapshot': (17, 'old_snapshot_threshold is gone in 17 too, so the view has nothing to show: '
                         'DROP EXTENSION old_snapshot'),
}
# Since 16, CREATEROLE lets a login grant only the roles it has ADMIN OPTION on (the ones it created), not
# every non-superuser role as before.
CREATEROLE_NARROWED = 16


def removed_extensions(findings, target_major: int) -> Check:
    """`findings`: assessment.Findings of each source database (its extensions)."""
    gone = sorted({(name, f.database) for f in findings for name in f.extensions
                   if name in REMOVED_EXTENSIONS and target_major >= REMOVED_EXTENSIONS[name][0]})
    if not gone:
        return _ok('extensions-removed', f'No extension the source uses was removed by PostgreSQL {target_major}.')
    said = '; '.join(f'{name} (removed in {REMOVED_EXTENSIONS[name][0]}) in {db}' for name, db in gone)
    fix = ' '.join(f'{name}: {REMOVED_EXTENSIONS[name][1]}.' for name in sorted({n for n, _ in gone}))
    return Check('extensions-removed', 'fail', f'The source uses extensions PostgreSQL {target_major} no longer has: '
                 f'{said}. Their CREATE EXTENSION fails, and whatever uses them with it.',
                 f'On the source, before the migration: {fix} Meanwhile the other databases can be migrated with '
                 '--databases.')


_MEMBERSHIPS = """
    SELECT r.rolname, m.rolname FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid
    JOIN pg_roles m ON m.oid = a.member ORDER BY 1, 2"""
# The roles of the target this login may grant: a superuser any, otherwise (16+) those it has ADMIN OPTION on.
_GRANTABLE = """
    SELECT rolname FROM pg_roles
    WHERE (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
       OR pg_has_role(current_user, oid, 'MEMBER WITH ADMIN OPTION')"""


def role_grants(source, target_conn, target_major: int, roles_wanted: bool) -> Check:
    """The roles restore re-creates the source's role memberships (GRANT r TO m). A role r the target already
    has (the admin login itself, a role someone else created) is not created again, and on 16+ the login may
    grant it only with ADMIN OPTION on it: "permission denied to grant role"."""
    if not roles_wanted or target_major < CREATEROLE_NARROWED:
        return _ok('target-role-grants', 'No role membership needs more than CREATEROLE on this target.')
    with catalog.connect(source) as src:
        memberships = src.execute(_MEMBERSHIPS).fetchall()
    existing = catalog.role_names(target_conn)
    grantable = {r[0] for r in target_conn.execute(_GRANTABLE).fetchall()}
    denied = [(role, member) for role, member in memberships
              if not is_service_role(role) and not is_service_role(member)
              and role in existing and role not in grantable]
    if not denied:
        return _ok('target-role-grants', f'{target_conn.info.user} may grant every role membership of the source.')
    login = target_conn.info.user
    shown = ', '.join(f'{role} to {member}' for role, member in denied[:10])
    more = f' and {len(denied) - 10} more' if len(denied) > 10 else ''
    roles = sorted({role for role, _ in denied})
    return Check('target-role-grants', 'fail',
                 f'The roles restore would grant {shown}{more}; on PostgreSQL {target_major} {login} may grant only '
                 f'roles it has ADMIN OPTION on, and {", ".join(roles)} already exist on the target without it '
                 '("permission denied to grant role").', _grants_fix(roles, login))


def _grants_fix(roles: list, login: str) -> str:
    others = [r for r in roles if r != login]
    fix = 'Revoke those memberships on the source (REVOKE role FROM member), or pass --no-roles and grant them ' \
          'yourself after the migration.'
    if others:
        names = ', '.join(sql.Identifier(r).as_string(None) for r in others)
        fix = (f'On the target, as a role with ADMIN OPTION on them: GRANT {names} TO '
               f'{sql.Identifier(login).as_string(None)} WITH ADMIN OPTION; or: {fix[0].lower()}{fix[1:]}')
    if login in roles:
        # Since 16 not even a role itself may grant membership in it; on Azure only the service can.
        fix += f' Membership in {login} itself only a superuser can grant since PostgreSQL 16.'
    return fix


def system_columns(findings, target_conn, target_major: int) -> Check:
    """Views of the source that use a column of a pg_catalog view the target lacks (what 17 moved from
    pg_stat_bgwriter to pg_stat_checkpointer, what 18 moved from pg_stat_wal to pg_stat_io, ...). Views over
    the catalogs themselves (12's pg_class.relhasoids) are not seen: a server records no dependency on a pinned
    object."""
    used = [(f.database, row) for f in findings for row in f.found.get('system_columns', [])]
    wanted = sorted({(relation, column) for _, (_, relation, column) in used})
    present = {tuple(r) for r in target_conn.execute(
        "SELECT c.relname, a.attname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid "
        "WHERE c.relnamespace = 'pg_catalog'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped "
        "AND (c.relname::text, a.attname::text) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
        ([r for r, _ in wanted], [c for _, c in wanted])).fetchall()}
    missing = [(db, (view, f'pg_catalog.{relation}.{column}')) for db, (view, relation, column) in used
               if (relation, column) not in present]
    if not missing:
        return _ok('system-columns', f'PostgreSQL {target_major} has every column of its own views that the '
                   'source\'s views use.')
    shown = ', '.join(f'{view} uses {column} ({db})' for db, (view, column) in missing[:10])
    more = f' and {len(missing) - 10} more' if len(missing) > 10 else ''
    return Check('system-columns', 'fail',
                 f'Views use columns of system views that PostgreSQL {target_major} no longer has: {shown}{more}. '
                 'Their CREATE VIEW fails, and whatever uses them with it.',
                 'Rewrite those views on the source over the columns the target has (its release notes say where '
                 'they went), or drop them and re-create them on the target after the migration. Meanwhile the '
                 'other databases can be migrated with --databases.')
