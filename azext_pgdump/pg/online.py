"""What an online migration needs (the source publishes its tables to the target through logical replication,
so that the target follows the source until the cutover), checked before anything is made: `check --online`.
Each check names what it found and gives the fix; the commands that need Azure come from the caller."""
from typing import Optional

from azext_pgdump.pg import catalog
from azext_pgdump.pg.preflight import Check
from azext_pgdump.pg.sql import user_object

# Tables whose UPDATE and DELETE a publication cannot carry: no primary key and the default replica identity, or
# replica identity NOTHING. Published, the application's own UPDATE and DELETE on them would fail on the source.
_NO_IDENTITY = f"""
SELECT format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND {user_object('pg_class', 'c.oid')}
  AND (c.relreplident = 'n' OR (c.relreplident = 'd' AND NOT EXISTS (
       SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)))
ORDER BY 1"""
# CREATE PUBLICATION ... FOR TABLE needs the ownership of each table (FOR ALL TABLES needs a superuser).
_NOT_OWNED = f"""
SELECT format('%I.%I (owner %I)', n.nspname, c.relname, pg_catalog.pg_get_userbyid(c.relowner))
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND {user_object('pg_class', 'c.oid')}
  AND NOT pg_catalog.pg_has_role(c.relowner, 'USAGE')
ORDER BY 1"""
_LARGE_OBJECTS = 'SELECT count(*) FROM pg_catalog.pg_largeobject_metadata'


def _listing(rows, limit=8) -> str:
    return ', '.join(rows[:limit]) + (f' and {len(rows) - limit} more' if len(rows) > limit else '')


def source_checks(source, kind: str, databases: list, wal_level_fix: str) -> list:
    """The source's side: it can publish (not a Single Server, wal_level logical, a login with REPLICATION, free
    slots and WAL senders) and each database's tables can be published. `wal_level_fix`: how to set it there."""
    if kind == 'single':
        return [Check('online-source', 'fail', 'A Single Server source cannot publish: Azure does not support '
                      'logical replication publications and subscriptions on Single Server.',
                      'Migrate it offline (run without --online), in a maintenance window.')]
    with catalog.connect(source) as conn:
        checks = [_wal_level(conn, wal_level_fix), _replication_role(conn), _slots(conn, len(databases))]
    for name in databases:
        with catalog.connect(source, name) as conn:
            checks += _database_checks(conn, name)
    return checks


def _wal_level(conn, fix: str) -> Check:
    level = conn.execute('SHOW wal_level').fetchone()[0]
    if level != 'logical':
        return Check('online-wal-level', 'fail', f'The source has wal_level = {level}; logical replication needs '
                     'logical.', fix)
    return Check('online-wal-level', 'pass', 'The source has wal_level = logical.')


def _replication_role(conn) -> Check:
    user, ok = conn.execute('SELECT current_user, rolreplication OR rolsuper FROM pg_catalog.pg_roles '
                            'WHERE rolname = current_user').fetchone()
    if not ok:
        return Check('online-replication-role', 'fail', f'{user} has no REPLICATION attribute: it cannot create the '
                     'replication slot the target follows.', f'As a superuser: ALTER ROLE "{user}" REPLICATION; '
                     '(Flexible Server\'s administrator has it).')
    return Check('online-replication-role', 'pass', f'{user} may create replication slots.')


def _slots(conn, databases: int) -> Check:
    """One slot per database, and while its copy runs, two WAL senders: the one holding the snapshot and the one
    the target will follow."""
    slots, used_slots, senders, used_senders = conn.execute(
        "SELECT current_setting('max_replication_slots')::int, (SELECT count(*) FROM pg_catalog.pg_replication_slots),"
        " current_setting('max_wal_senders')::int, (SELECT count(*) FROM pg_catalog.pg_stat_replication)").fetchone()
    need_slots, need_senders = databases, 2 * databases
    if slots - used_slots < need_slots or senders - used_senders < need_senders:
        return Check('online-slots', 'fail', f'The source has {slots - used_slots} free replication slots of '
                     f'{slots} and {senders - used_senders} free WAL senders of {senders}; {databases} databases '
                     f'need {need_slots} and {need_senders}.',
                     'Raise max_replication_slots and max_wal_senders on the source (a restart), or migrate fewer '
                     'databases at once (--databases).')
    return Check('online-slots', 'pass', f'{slots - used_slots} free replication slots and {senders - used_senders} '
                 f'free WAL senders for {databases} databases.')


def _database_checks(conn, name: str) -> list:
    checks = []
    no_identity = [r[0] for r in conn.execute(_NO_IDENTITY).fetchall()]
    if no_identity:
        checks.append(Check(f'online-replica-identity/{name}', 'fail',
                            f'{name}: {_listing(no_identity)} have no primary key (or REPLICA IDENTITY NOTHING): '
                            'published, their UPDATE and DELETE would fail on the source.',
                            'Add a primary key, or ALTER TABLE ... REPLICA IDENTITY FULL (every UPDATE and DELETE '
                            'then writes the whole old row to the WAL, and the target finds each row by a scan).'))
    not_owned = [r[0] for r in conn.execute(_NOT_OWNED).fetchall()]
    if not_owned:
        checks.append(Check(f'online-table-ownership/{name}', 'fail',
                            f'{name}: the login neither owns nor is a member of the owner of {_listing(not_owned)}; '
                            'a publication of a table needs its ownership.',
                            'GRANT each owner role to the login (as that role or an administrator), or migrate '
                            'offline.'))
    large = conn.execute(_LARGE_OBJECTS).fetchone()[0]
    if large:
        checks.append(Check(f'online-large-objects/{name}', 'fail',
                            f'{name} has {large} large objects: logical replication does not carry them, so '
                            'changes to them after the copy would be lost.',
                            'Migrate this database offline, or move the large objects into bytea columns first.'))
    if not checks:
        checks.append(Check(f'online-tables/{name}', 'pass', f'{name}: every table can be published.'))
    return checks


def target_check(target, kind: Optional[str]) -> Check:
    """The target's admin must be able to create a subscription: 16+ by membership in pg_create_subscription;
    before 16 only a superuser may, but Flexible Server lets its administrator."""
    with catalog.connect(target) as conn:
        major = catalog.server_major(conn)
        user, superuser = conn.execute('SELECT current_user, rolsuper FROM pg_catalog.pg_roles '
                                       'WHERE rolname = current_user').fetchone()
        member = major >= 16 and conn.execute(
            "SELECT pg_catalog.pg_has_role('pg_create_subscription', 'USAGE')").fetchone()[0]
    if superuser or member or (major < 16 and kind == 'flexible'):
        return Check('online-subscription', 'pass', f'{user} may create the subscription on the target.')
    fix = (f'GRANT pg_create_subscription TO "{user}"; (as an administrator)' if major >= 16 else
           'Choose a PostgreSQL 16+ target, or a Flexible Server.')
    return Check('online-subscription', 'fail', f'{user} may not create subscriptions on the target.', fix)
