"""What an online migration needs (the source publishes its tables to the target through logical replication,
so that the target follows the source until the cutover), checked before anything is made: `check --online`.
Each check names what it found and gives the fix; the commands that need Azure come from the caller."""
import secrets
import time
from typing import Optional

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from azext_pgdump.pg import catalog, children
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


def source_checks(source, kind: str, databases: list, wal_level_fix: str, identity_full: bool = False) -> list:
    """The source's side: it can publish (not a Single Server, wal_level logical, a login with REPLICATION, free
    slots and WAL senders) and each database's tables can be published. `wal_level_fix`: how to set it there.
    `identity_full`: run --replica-identity-full, tables with no key are published with REPLICA IDENTITY FULL."""
    if kind == 'single':
        return [Check('online-source', 'fail', 'A Single Server source cannot publish: Azure does not support '
                      'logical replication publications and subscriptions on Single Server.',
                      'Migrate it offline (run without --online), in a maintenance window.')]
    with catalog.connect(source) as conn:
        checks = [_wal_level(conn, wal_level_fix), _replication_role(conn), _slots(conn, len(databases))]
    for name in databases:
        with catalog.connect(source, name) as conn:
            checks += _database_checks(conn, name, identity_full)
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


def _database_checks(conn, name: str, identity_full: bool) -> list:
    checks = []
    if not conn.execute("SELECT pg_catalog.has_database_privilege(current_database(), 'CREATE')").fetchone()[0]:
        checks.append(Check(f'online-heartbeat/{name}', 'fail', f'The login may not create a schema in {name}: the '
                            f'run keeps its heartbeat table (how far behind the target is) in a schema {SCHEMA}.',
                            f'GRANT CREATE ON DATABASE "{name}" TO the login (as its owner).'))
    no_identity = [r[0] for r in conn.execute(_NO_IDENTITY).fetchall()]
    if no_identity and identity_full:
        checks.append(Check(f'online-replica-identity/{name}', 'warn',
                            f'{name}: {_listing(no_identity)} have no primary key: they are published with REPLICA '
                            'IDENTITY FULL (--replica-identity-full). Every UPDATE and DELETE of them then writes '
                            'the whole old row to the source\'s WAL, and the target finds each row by a scan.',
                            'Add primary keys where the tables are large and often updated.'))
    elif no_identity:
        checks.append(Check(f'online-replica-identity/{name}', 'fail',
                            f'{name}: {_listing(no_identity)} have no primary key (or REPLICA IDENTITY NOTHING): '
                            'published, their UPDATE and DELETE would fail on the source.',
                            'Add a primary key, or pass --replica-identity-full to `run --online` (ALTER TABLE ... '
                            'REPLICA IDENTITY FULL on those tables: every UPDATE and DELETE then writes the whole '
                            'old row to the WAL, and the target finds each row by a scan).'))
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


# ----- the online run: publish, follow, cut over --------------------------------------------------------------

SCHEMA = 'azext_pgdump'   # holds the heartbeat table, on the source and (restored with the schema) the target
_HEARTBEAT = sql.SQL('{}.heartbeat').format(sql.Identifier(SCHEMA))
# What a publication lists: plain tables that are not partitions, and partitioned tables (published through
# their root, so the target's partitioned table routes each row as the source did).
_PUBLISHED = f"""
SELECT format('%I.%I', n.nspname, c.relname), n.nspname FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND {user_object('pg_class', 'c.oid')}
ORDER BY 1"""
ROOT_SINCE = 13   # publish_via_partition_root


LIVE_LOCK = 20261202   # pg_advisory_lock(LIVE_LOCK, the names' token): held on the source while a run is alive


def hold(source, database: str, made: dict):
    """A connection that holds an advisory lock named after the run's objects for as long as the run lives (a
    killed run's connection ends, and its lock with it): how `cleanup --online-leftovers` tells a run still
    copying (its slot idle, no subscription yet) from a leftover."""
    conn = catalog.connect(source, database)
    try:
        conn.execute('SELECT pg_catalog.pg_advisory_lock(%s, %s)', (LIVE_LOCK, _signed(made['slot'])))
    except BaseException:
        conn.close()
        raise
    return conn


def _signed(name: str) -> int:
    """The names' 8 hex digits as the int4 key pg_advisory_lock takes (pg_locks shows it back as an oid)."""
    token = int(name.rsplit('_', 1)[1], 16)
    return token - (1 << 32) if token >= 1 << 31 else token


def held(conn) -> set:
    """The names of the runs alive on this server (see hold)."""
    rows = conn.execute("SELECT objid::bigint FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND "
                        'classid = %s AND objsubid = 2 AND granted', (LIVE_LOCK,)).fetchall()
    return {f'azext_pgdump_{row[0]:08x}' for row in rows}


def names(token: str) -> dict:
    """The objects an online run makes for one database; one name, recognisable for `cleanup`."""
    name = f'azext_pgdump_{token}'
    return {'publication': name, 'slot': name, 'subscription': name, 'role': name}


def publish(source, database: str, major: int, identity_full: bool = False) -> dict:
    """On the source: the heartbeat table and a publication of every table. Returns the names. The slot comes
    after (see create_slot): a publication must exist before the slot's first change. `identity_full`: tables
    with no key get REPLICA IDENTITY FULL in the same transaction (published without it, their UPDATE and DELETE
    would fail); the record keeps what they had, for cancel."""
    made = names(secrets.token_hex(4))
    ident = {k: sql.Identifier(v) for k, v in made.items()}
    with catalog.connect(source, database) as conn, conn.transaction():
        if identity_full:
            made['identityFull'] = _identity_full(conn)
        conn.execute(sql.SQL('CREATE SCHEMA IF NOT EXISTS {}').format(sql.Identifier(SCHEMA)))
        conn.execute(sql.SQL('CREATE TABLE IF NOT EXISTS {} (id int PRIMARY KEY, at timestamptz NOT NULL, '
                             'lsn pg_lsn)').format(_HEARTBEAT))
        conn.execute(sql.SQL('INSERT INTO {} VALUES (1, clock_timestamp(), pg_current_wal_lsn()) '
                             'ON CONFLICT (id) DO NOTHING').format(_HEARTBEAT))
        tables = conn.execute(_PUBLISHED).fetchall()
        listed = sql.SQL(', ').join(sql.SQL(row[0]) for row in tables)   # format('%I.%I'): quoted already
        options = sql.SQL(' WITH (publish_via_partition_root = true)') if major >= ROOT_SINCE else sql.SQL('')
        conn.execute(sql.SQL('CREATE PUBLICATION {} FOR TABLE {}{}').format(ident['publication'], listed, options))
    return dict(made, tables=len(tables))


def _identity_full(conn) -> list:
    """[table, its replica identity before ('d' default, 'n' nothing)] for each table changed to FULL."""
    changed = conn.execute(_NO_IDENTITY.replace("SELECT format('%I.%I', n.nspname, c.relname)",
                                                "SELECT format('%I.%I', n.nspname, c.relname), c.relreplident::text"
                                                )).fetchall()
    for table, _ in changed:   # format('%I.%I'): quoted already
        conn.execute(sql.SQL('ALTER TABLE {} REPLICA IDENTITY FULL').format(sql.SQL(table)))
    return [list(row) for row in changed]


def _identity_back(conn, made: dict) -> list:
    """cancel: the tables --replica-identity-full changed get their replica identity back."""
    back = []
    for table, was in made.get('identityFull', []):
        how = sql.SQL('NOTHING' if was == 'n' else 'DEFAULT')
        try:
            with conn.transaction():
                conn.execute(sql.SQL('ALTER TABLE {} REPLICA IDENTITY {}').format(sql.SQL(table), how))
        except psycopg.errors.UndefinedTable:   # dropped since: nothing to give back
            continue
        back.append(f'replica identity of {table}')
    return back


def login_for_subscription(source, database: str, made: dict) -> tuple:
    """(user, password) the target's subscription logs in to the source with: a login of the run's own (random
    password, REPLICATION, read access to the published tables), made after the snapshot so that the copy carries
    none of its grants; the admin's when the source does not let the admin make one (before 16, only a superuser
    may create a role with REPLICATION; `made['role']` then becomes None)."""
    if not made.get('role'):   # an earlier attempt found the source does not let the admin make one
        made['role'] = None
        return _admin_login(source)
    password = secrets.token_urlsafe(24)
    role = sql.Identifier(made['role'])
    with catalog.connect(source, database) as conn, conn.transaction():
        rows = conn.execute("SELECT format('%%I', schemaname), format('%%I.%%I', schemaname, tablename) "
                            'FROM pg_catalog.pg_publication_tables WHERE pubname = %s',
                            (made['publication'],)).fetchall()
        schemas = sorted({r[0] for r in rows})
        listed = sql.SQL(', ').join(sql.SQL(r[1]) for r in rows)
        if _own_login(conn, role, password, schemas, listed):
            return made['role'], password
    made['role'] = None
    return _admin_login(source)


def _admin_login(source) -> tuple:
    """The admin's login for the subscription; not an Entra token, which expires within the hour while the
    subscription must log in again after any break for as long as it follows."""
    if source.password_source is not None:
        raise catalog.ConnectError('The source does not let its admin make a login for the subscription (before '
                                   'PostgreSQL 16 only a superuser may create one with REPLICATION), and the admin '
                                   'logs in with an Entra token, which expires within the hour: the subscription '
                                   'could not log in again. Run --online with a password login of the source, or '
                                   'from a PostgreSQL 16+ source.')
    return source.user, source.current_password()


def _own_login(conn, role, password: str, schemas: list, listed) -> bool:  # schemas: quoted names
    """A login of the run's own for the target's subscription, so that the admin's password is not kept in the
    target's catalog. Before 16 only a superuser may create a role with REPLICATION: then False."""
    try:
        with conn.transaction():
            conn.execute(sql.SQL('CREATE ROLE {} LOGIN REPLICATION PASSWORD {}').format(role, sql.Literal(password)))
    except psycopg.errors.InsufficientPrivilege:
        return False
    except psycopg.errors.DuplicateObject:   # made by a run killed before its subscription: a new password
        conn.execute(sql.SQL('ALTER ROLE {} PASSWORD {}').format(role, sql.Literal(password)))
    if schemas:
        conn.execute(sql.SQL('GRANT USAGE ON SCHEMA {} TO {}').format(
            sql.SQL(', ').join(sql.SQL(s) for s in schemas), role))
    conn.execute(sql.SQL('GRANT SELECT ON {} TO {}').format(listed, role))
    return True


def create_slot(source, database: str, slot: str, major: int) -> tuple:
    """(the replication connection, the snapshot it exported, the slot's first LSN). The copy reads exactly
    that snapshot, so the subscription starts where the copy ends: nothing missed, nothing twice. The
    snapshot lives as long as the connection stays open and idle."""
    conn = catalog.connect(source, database, replication=True)
    how = " (SNAPSHOT 'export')" if major >= 15 else ' EXPORT_SNAPSHOT'
    try:
        _, lsn, snapshot, _ = conn.execute(
            sql.SQL('CREATE_REPLICATION_SLOT {} LOGICAL pgoutput').format(sql.Identifier(slot)).as_string(conn)
            + how).fetchone()
    except BaseException:
        conn.close()
        raise
    return conn, snapshot, lsn


def subscribe(target, source, database: str, made: dict) -> None:
    """On the target, once the copy and its indexes are in: a subscription that starts at the slot (no slot
    made, no data copied), logging in to the source as the run's own role."""
    ident = sql.Identifier(made['subscription'])
    with catalog.connect(target, database) as conn:
        enabled = _subscription(conn, made['subscription'])
        if enabled is None:   # a run resumed during the catch-up finds it made already, and maybe enabled
            user, password = login_for_subscription(source, database, made)
            conninfo = make_conninfo(host=source.host, port=str(source.port), dbname=database, user=user,
                                     password=password, sslmode=source.sslmode)
            try:   # the target connects to the source here already (to check the publication)
                conn.execute(sql.SQL('CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} WITH (create_slot = '
                                     'false, slot_name = {}, copy_data = false, enabled = false)').format(
                    ident, sql.Literal(conninfo), sql.Identifier(made['publication']), sql.Literal(made['slot'])))
            except psycopg.OperationalError as err:
                if not (err.sqlstate or '').startswith('08'):
                    raise
                raise catalog.ConnectError(f'{database}: {str(err).strip()}. {_UNREACHABLE}') from err
        if not enabled:
            conn.execute(sql.SQL('ALTER SUBSCRIPTION {} ENABLE').format(ident))


def connected(source, database: str, slot: str, timeout: float) -> None:
    """Wait until the target's subscription has connected to the source (its WAL sender holds the slot). A
    target that cannot reach or log in to the source (the source's firewall or network rules do not admit the
    target server itself, only this machine) would otherwise look like a target that follows with a growing lag."""
    deadline = time.monotonic() + timeout
    with catalog.connect(source, database) as conn:
        while True:
            row = conn.execute('SELECT active FROM pg_catalog.pg_replication_slots WHERE slot_name = %s',
                               (slot,)).fetchone()
            if row is None:
                raise catalog.ConnectError(f'{database}: the replication slot {slot} is gone from the source (removed '
                                           'by someone else?): run `az postgres dumprestore cancel`, then run again.')
            if row[0]:
                return
            if children.stopping():
                raise children.Stopped('interrupted')
            if time.monotonic() > deadline:
                raise catalog.ConnectError(f'{database}: the target\'s subscription has not connected to the source '
                                           f'in {timeout:.0f} s (the target\'s server log says why). {_UNREACHABLE}')
            time.sleep(0.5)


_UNREACHABLE = ('The source must admit connections from the target server itself (its firewall rules or network '
                'settings: allow the target\'s outbound address; the run opened the firewall only to this machine), '
                'and the target must reach the source\'s host and port. Then continue with `az postgres dumprestore '
                'run --resume` and the same --work-dir, or `cancel`.')


def _subscription(conn, name: str):
    """None when the target has no subscription of that name in this database; else whether it is enabled."""
    row = conn.execute('SELECT subenabled FROM pg_catalog.pg_subscription WHERE subname = %s AND subdbid = '
                       '(SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())',
                       (name,)).fetchone()
    return None if row is None else row[0]


def lag(source, target, database: str, slot: str) -> dict:
    """How far the target is behind: a heartbeat written on the source now, against the last one the target
    applied (seconds), and the WAL the slot still holds for it (bytes)."""
    with catalog.connect(source, database) as src:
        at = _beat(src)
        behind, kept = src.execute(
            'SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn), pg_wal_lsn_diff(pg_current_wal_lsn(), '
            'restart_lsn) FROM pg_catalog.pg_replication_slots WHERE slot_name = %s', (slot,)).fetchone() or (0, 0)
    with catalog.connect(target, database) as tgt:
        applied = _applied(tgt)
    return {'bytes': int(behind or 0), 'seconds': round(max((at - applied).total_seconds(), 0.0), 1),
            'retainedBytes': int(kept or 0), 'heartbeat': at.isoformat()}


def _beat(conn):
    """A heartbeat on the source, now: the time it says, once the target has applied it."""
    return conn.execute(sql.SQL('UPDATE {} SET at = clock_timestamp(), lsn = pg_current_wal_lsn() WHERE id = 1 '
                                'RETURNING at').format(_HEARTBEAT)).fetchone()[0]


def _applied(conn):
    """The newest heartbeat the target has applied."""
    return conn.execute(sql.SQL('SELECT at FROM {} WHERE id = 1').format(_HEARTBEAT)).fetchone()[0]


def caught_up(source, target, database: str, timeout: float, say) -> float:
    """Wait until the target applied a heartbeat written now: everything the source committed before it is in
    (one subscription applies in commit order). Returns the seconds it took."""
    started = time.monotonic()
    with catalog.connect(source, database) as src:
        mark = _beat(src)
    with catalog.connect(target, database) as tgt:
        while True:
            applied = _applied(tgt)
            if applied >= mark:
                return round(time.monotonic() - started, 2)
            if children.stopping():   # the run is stopping (a signal, the slot's WAL limit): no more waiting
                raise children.Stopped('interrupted')
            if time.monotonic() - started > timeout:
                raise TimeoutError(f'{database}: the target has not applied the source\'s last changes after '
                                   f'{timeout:.0f} s (it is {(mark - applied).total_seconds():.0f} s behind)')
            say(f'  {database}: waiting for the target to apply the last changes '
                f'({(mark - applied).total_seconds():.1f} s behind)...')
            time.sleep(1)


# The columns of every user table, as the subscription applies rows by column name: what DDL on the source since
# the snapshot would have changed (logical replication does not carry DDL).
_COLUMNS = f"""
SELECT format('%I.%I.%I %s', n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod))
FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped AND n.nspname <> '{SCHEMA}'
  AND {user_object('pg_class', 'c.oid')}"""


def schema_changes(source, target, database: str) -> list:
    """Table columns the source and the target do not share (a column added, dropped or retyped on the source
    since the copy); the cutover refuses while there are any."""
    with catalog.connect(source, database) as src, catalog.connect(target, database) as tgt:
        theirs = {r[0] for r in src.execute(_COLUMNS).fetchall()}
        ours = {r[0] for r in tgt.execute(_COLUMNS).fetchall()}
    return [f'only on the source: {c}' for c in sorted(theirs - ours)] + \
        [f'only on the target: {c}' for c in sorted(ours - theirs)]


def sequences(source, target, database: str) -> int:
    """Logical replication does not carry sequences: the target's take the source's values. Returns how many."""
    with catalog.connect(source, database) as src:
        rows = src.execute("SELECT format('%I.%I', schemaname, sequencename), last_value FROM "
                           f"pg_catalog.pg_sequences WHERE last_value IS NOT NULL AND schemaname <> '{SCHEMA}'"
                           ).fetchall()
    with catalog.connect(target, database) as tgt:
        for name, value in rows:
            tgt.execute('SELECT pg_catalog.setval(%s::regclass, %s, true)', (name, value))
    return len(rows)


def teardown(source, target, database: str, made: dict, cut_over: bool = False) -> list:
    """Remove what the online run made, target first (its subscription holds the slot): the subscription, the
    slot, the publication, the role, the heartbeat schema on both sides. What is already gone is skipped, so a
    cutover or cancel cut short can be run again; a target database not made yet (a run stopped before) has
    nothing of it, but a target that cannot be reached stops here (its subscription would outlive the slot).
    `cut_over`: the tables --replica-identity-full changed keep REPLICA IDENTITY FULL (the target has it too, from
    the schema dump); otherwise the source gets back what it had. Returns what was removed."""
    with catalog.connect(target) as conn:
        if not conn.execute('SELECT 1 FROM pg_catalog.pg_database WHERE datname = %s', (database,)).fetchone():
            return teardown_source(source, database, made, not cut_over)
    tgt = catalog.connect(target, database)
    removed = []
    sub = made['subscription']
    with tgt:
        if _subscription(tgt, sub) is not None:
            drop_subscription(tgt, sub)
            removed.append(f'subscription {sub}')
        tgt.execute(sql.SQL('DROP SCHEMA IF EXISTS {} CASCADE').format(sql.Identifier(SCHEMA)))
    return removed + teardown_source(source, database, made, not cut_over)


def teardown_source(source, database: str, made: dict, identity_back: bool = True) -> list:
    """The source's half of teardown: the slot, the publication, the heartbeat schema, the run's role, and with
    `identity_back` the replica identity of the tables --replica-identity-full changed."""
    removed = []
    with catalog.connect(source, database) as src:
        if identity_back:
            removed += _identity_back(src, made)
        if drop_slot(src, made['slot']):
            removed.append(f"replication slot {made['slot']}")
        src.execute(sql.SQL('DROP PUBLICATION IF EXISTS {}').format(sql.Identifier(made['publication'])))
        src.execute(sql.SQL('DROP SCHEMA IF EXISTS {} CASCADE').format(sql.Identifier(SCHEMA)))
        if made.get('role') and src.execute('SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s',
                                            (made['role'],)).fetchone():
            revoke_all(src, made['role'])
            src.execute(sql.SQL('DROP ROLE {}').format(sql.Identifier(made['role'])))
            removed.append(f"role {made['role']}")
    return removed


def drop_subscription(conn, name: str) -> None:
    """In the subscription's database. Without its slot (slot_name = NONE): dropping the slot is the source's
    side, and a source that cannot be reached then does not keep the subscription."""
    ident = sql.Identifier(name)
    conn.execute(sql.SQL('ALTER SUBSCRIPTION {} DISABLE').format(ident))
    conn.execute(sql.SQL('ALTER SUBSCRIPTION {} SET (slot_name = NONE)').format(ident))
    conn.execute(sql.SQL('DROP SUBSCRIPTION {}').format(ident))


def revoke_all(conn, role: str) -> None:
    """What login_for_subscription granted. Not DROP OWNED BY: on 16+ the admin that made a role may drop it,
    but may act as it (DROP OWNED) only if it is also a member."""
    granted = conn.execute(
        "SELECT 'TABLE', c.oid::regclass::text FROM pg_catalog.pg_class c, aclexplode(c.relacl) a "
        "WHERE a.grantee = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = %s) "
        "UNION SELECT 'SCHEMA', format('%%I', n.nspname) FROM pg_catalog.pg_namespace n, aclexplode(n.nspacl) a "
        "WHERE a.grantee = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = %s)", (role, role)).fetchall()
    for kind, name in granted:
        conn.execute(sql.SQL('REVOKE ALL ON {} {} FROM {}').format(sql.SQL(kind), sql.SQL(name), sql.Identifier(role)))


def drop_slot(conn, slot: str) -> bool:
    """In the slot's database (a logical slot is dropped there). The subscription's WAL sender lets the slot go
    a moment after the subscription is disabled. False when there was no such slot."""
    deadline = time.monotonic() + 30
    while True:
        row = conn.execute('SELECT active FROM pg_catalog.pg_replication_slots WHERE slot_name = %s',
                           (slot,)).fetchone()
        if row is None:
            return False
        if not row[0] or time.monotonic() > deadline:
            conn.execute('SELECT pg_catalog.pg_drop_replication_slot(%s)', (slot,))
            return True
        time.sleep(0.2)
