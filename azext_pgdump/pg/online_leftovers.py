"""What `run --online` made that no work dir remembers any more (az killed with SIGKILL, the work dir lost), found
on the servers by its names, for `cleanup --online-leftovers`. A forgotten slot keeps the source's WAL for ever.

One run's objects for one database share one name (online.names). That name is in use while its subscription is
enabled (a run that succeeded and awaits `cutover`), its slot is active (the target applying), or the run that
made it is alive (it holds an advisory lock named after it on the source, see online.hold: a run copying keeps its
slot idle and has no subscription yet): a migration, not a leftover. Its objects are listed and kept unless
`include_following` says to remove them too (a following migration whose work dir is lost, which `cancel` can no
longer end).

Every server given is searched for every kind (a server may have been the target of one run and the source of
another). An item: {name, kind, side, server, database (None for a role), inUse, status}; status is 'to remove'
or 'kept' once decided, then 'removed' or 'failed' (with 'error')."""
import psycopg
from psycopg import sql

from azext_pgdump.pg import catalog, online

# online.names(): the prefix and secrets.token_hex(4). A role the user named azext_pgdump_admin is not ours.
NAME_PATTERN = '^azext_pgdump_[0-9a-f]{8}$'
# Removal order: the subscription first (it holds the slot), the role after the publication it reads, the
# heartbeat schema last (only where nothing of ours is kept: see _keep_schemas).
KINDS = ('subscription', 'replication-slot', 'publication', 'role', 'schema')

# Shared catalogs, read once per server. pg_subscription's columns but subconninfo are readable by anyone.
_SUBSCRIPTIONS = ('SELECT s.subname, d.datname, s.subenabled FROM pg_catalog.pg_subscription s '
                  'JOIN pg_catalog.pg_database d ON d.oid = s.subdbid WHERE s.subname ~ %s ORDER BY 1')
_SLOTS = ('SELECT slot_name::text, database::text, active FROM pg_catalog.pg_replication_slots '
          'WHERE slot_name ~ %s ORDER BY 1')
_ROLES = 'SELECT rolname::text FROM pg_catalog.pg_roles WHERE rolname ~ %s ORDER BY 1'
_PUBLICATIONS = 'SELECT pubname::text FROM pg_catalog.pg_publication WHERE pubname ~ %s ORDER BY 1'


def find(source, target) -> list:
    """Every object of an online run on `source` and `target` (either may be None), with inUse."""
    found, alive = [], set()
    for side, endpoint in (('target', target), ('source', source)):
        if endpoint is not None:
            found += _on_server(side, endpoint)
            with catalog.connect(endpoint) as conn:   # runs still alive (copying: slot idle, no subscription yet)
                alive |= online.held(conn)
    busy = {i['name'] for i in found if i.pop('busy')} | alive
    busy_databases = {i['database'] for i in found if i['name'] in busy}
    for item in found:
        # The heartbeat schema serves every run of its database: in use while one of them is (on either server).
        item['inUse'] = item['name'] in busy or (item['kind'] == 'schema' and item['database'] in busy_databases)
    return found


def _on_server(side: str, endpoint) -> list:
    def item(name, kind, database, busy=False):
        return {'name': name, 'kind': kind, 'side': side, 'server': endpoint.name, 'database': database,
                'busy': bool(busy)}
    with catalog.connect(endpoint) as conn:
        databases = [d.name for d in catalog.databases(conn)]
        found = [item(n, 'subscription', d, enabled) for n, d, enabled in conn.execute(_SUBSCRIPTIONS,
                                                                                        (NAME_PATTERN,))]
        found += [item(n, 'replication-slot', d, active) for n, d, active in conn.execute(_SLOTS, (NAME_PATTERN,))]
        found += [item(n, 'role', None) for (n,) in conn.execute(_ROLES, (NAME_PATTERN,))]
    for database in databases:   # publications and schemas live in a database
        with catalog.connect(endpoint, database) as conn:
            found += [item(n, 'publication', database) for (n,) in conn.execute(_PUBLICATIONS, (NAME_PATTERN,))]
            if conn.execute('SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %s', (online.SCHEMA,)).fetchone():
                found.append(item(online.SCHEMA, 'schema', database))
    return found


def decide(items: list, include_following: bool = False) -> list:
    """Each item's status: 'kept' when in use (unless include_following), else 'to remove'."""
    for item in items:
        item['status'] = 'kept' if item['inUse'] and not include_following else 'to remove'
    _keep_schemas(items)
    return items


def _keep_schemas(items: list) -> None:
    """A database's heartbeat schema stays while anything of ours in a database of that name stays, on either
    server: a run still copying has its slot and publication on the source and restored the schema on the
    target, where the subscription will write the heartbeat."""
    kept = {i['database'] for i in items if i['kind'] != 'schema' and i['status'] in ('kept', 'failed')}
    for item in items:
        if item['kind'] == 'schema' and item['status'] == 'to remove' and item['database'] in kept:
            item['status'] = 'kept'


def remove(source, target, items: list) -> list:
    """Drop the items decided 'to remove', kind by kind; one that fails is reported and the rest go on."""
    endpoints = {'source': source, 'target': target}
    for kind in KINDS:
        if kind == 'schema':
            _keep_schemas(items)   # again: a failure above keeps its database's schemas
        for item in items:
            if item['kind'] == kind and item['status'] == 'to remove':
                _drop(endpoints[item['side']], item)
    return items


def _drop(endpoint, item: dict) -> None:
    try:
        _DROPS[item['kind']](endpoint, item)
    except (psycopg.Error, catalog.ConnectError) as err:
        item.update(status='failed', error=str(err).strip())
        return
    item['status'] = 'removed'


def _drop_subscription(endpoint, item):
    with catalog.connect(endpoint, item['database']) as conn:
        online.drop_subscription(conn, item['name'])


def _drop_slot(endpoint, item):
    with catalog.connect(endpoint, item['database']) as conn:
        online.drop_slot(conn, item['name'])


def _drop_publication(endpoint, item):
    with catalog.connect(endpoint, item['database']) as conn:
        conn.execute(sql.SQL('DROP PUBLICATION IF EXISTS {}').format(sql.Identifier(item['name'])))


def _drop_role(endpoint, item):
    """Its grants first, in every database: a role that still holds a privilege cannot be dropped (and not DROP
    OWNED: see online.revoke_all)."""
    with catalog.connect(endpoint) as conn:
        databases = [d.name for d in catalog.databases(conn)]
    for database in databases:
        with catalog.connect(endpoint, database) as conn:
            online.revoke_all(conn, item['name'])
    with catalog.connect(endpoint) as conn:
        conn.execute(sql.SQL('DROP ROLE IF EXISTS {}').format(sql.Identifier(item['name'])))


def _drop_schema(endpoint, item):
    with catalog.connect(endpoint, item['database']) as conn:
        conn.execute(sql.SQL('DROP SCHEMA IF EXISTS {} CASCADE').format(sql.Identifier(online.SCHEMA)))


_DROPS = {'subscription': _drop_subscription, 'replication-slot': _drop_slot, 'publication': _drop_publication,
          'role': _drop_role, 'schema': _drop_schema}
