"""What a run made in a database it did not create (the target's `postgres`, or one `--if-exists reuse`
names), so that a resumed run removes exactly that before it restores again, and nothing the user had there.

Before the run first writes into such a database it lists every object there (schemas, relations, types,
routines, ... and large objects, by catalog and OID) into the work dir. A resume drops what is not on that
list, owners first (an extension or a schema takes what is in it), each `IF EXISTS ... CASCADE`: a drop
may already have taken the next one. A database the run created needs none of this: it is dropped whole."""
import json
from pathlib import Path

import psycopg
from psycopg import sql

from azext_pgdump.pg import catalog
from azext_pgdump.pg.endpoint import Endpoint
from azext_pgdump.pg.sql import users_own
from azext_pgdump.pg.workdir import private_file

FORMAT = 1
FIRST_USER_OID = 16384   # below: the server's own objects (FirstNormalObjectId)
# Catalogs whose rows are objects a restore creates, in the order their new ones are dropped: what holds
# other objects first. Objects that belong to an extension, or live only as part of another object (an
# array type, a table's row type, a toast table), are dropped with their owner, never on their own.
CATALOGS = ('pg_extension', 'pg_namespace', 'pg_class', 'pg_proc', 'pg_type', 'pg_operator', 'pg_opclass',
            'pg_opfamily', 'pg_collation', 'pg_conversion', 'pg_ts_config', 'pg_ts_dict', 'pg_ts_parser',
            'pg_ts_template', 'pg_statistic_ext', 'pg_cast', 'pg_language', 'pg_foreign_server',
            'pg_foreign_data_wrapper', 'pg_publication', 'pg_event_trigger', 'pg_largeobject_metadata')
# pg_identify_object's type -> the words of its DROP, where they differ.
DROP_WORDS = {'composite type': 'TYPE', 'foreign-data wrapper': 'FOREIGN DATA WRAPPER',
              'statistics object': 'STATISTICS', 'domain': 'DOMAIN'}


def _objects(conn) -> dict:
    """catalog -> {oid: (type, identity)} of the objects a drop may concern."""
    out = {}
    for cat in CATALOGS:
        if cat == 'pg_largeobject_metadata':  # pg_identify_object knows them by another catalog, and says little
            rows = conn.execute('SELECT oid FROM pg_catalog.pg_largeobject_metadata').fetchall()
            out[cat] = {int(oid): ('large object', str(oid)) for oid, in rows}
            continue
        kind = sql.SQL("CASE WHEN t.typtype = 'd' THEN 'domain' ELSE i.type END") if cat == 'pg_type' \
            else sql.SQL('i.type')
        join = sql.SQL('JOIN pg_catalog.pg_type t ON t.oid = c.oid') if cat == 'pg_type' else sql.SQL('')
        rows = conn.execute(sql.SQL(
            "SELECT c.oid, {kind}, i.identity FROM pg_catalog.{cat} c {join}, "
            "pg_catalog.pg_identify_object({regclass}::pg_catalog.regclass, c.oid, 0) i "
            "WHERE c.oid >= {first} AND {own}"
        ).format(kind=kind, cat=sql.Identifier(cat), join=join, regclass=sql.Literal(f'pg_catalog.{cat}'),
                 first=sql.Literal(FIRST_USER_OID), own=sql.SQL(users_own(cat, 'c.oid')))).fetchall()
        out[cat] = {int(oid): (kind_, identity) for oid, kind_, identity in rows}
    return out


def take(target: Endpoint, database: str, path: Path) -> dict:
    """List what the database holds before the run writes into it."""
    with catalog.connect(target, database) as conn:
        objects = _objects(conn)
    private_file(path, json.dumps({'format': FORMAT, 'database': database,
                                   'objects': {cat: sorted(oids) for cat, oids in objects.items()}}))
    return {'footprint': {'file': str(path), 'objectsBefore': sum(len(o) for o in objects.values())}}


def statements(before: dict, now: dict) -> list:
    """The statements that remove what is in `now` and not in `before`, owners first."""
    out = []
    for cat in CATALOGS:
        had = set(before.get(cat, ()))
        for oid, (kind, identity) in sorted(now.get(cat, {}).items()):
            if oid in had:
                continue
            if cat == 'pg_largeobject_metadata':
                out.append((cat, oid, sql.SQL('SELECT pg_catalog.lo_unlink({})').format(sql.Literal(oid))))
            elif kind not in ('index', 'transform', 'default acl'):  # an index goes with its table
                words = DROP_WORDS.get(kind, kind.upper())
                # identity is pg_identify_object's, quoted as SQL already (schema.name, name(args), (a AS b), ...)
                out.append((cat, oid, sql.SQL('DROP {} IF EXISTS {} CASCADE').format(sql.SQL(words),
                                                                                    sql.SQL(identity))))
    return out


def undo(target: Endpoint, database: str, path: Path) -> dict:
    """Drop what the interrupted run made in the database; the user's objects stay as they were. Without a
    list the run had not written into it yet: the list is taken now."""
    if not path.exists():
        return take(target, database, path)
    before = json.loads(path.read_text())['objects']
    with catalog.connect(target, database) as conn:
        todo = statements(before, _objects(conn))
        for cat, oid, statement in todo:
            try:
                conn.execute(statement)
            except psycopg.Error as err:
                if _exists(conn, cat, oid):  # not one a drop before it took with it: a real failure
                    raise catalog.ConnectError(f'Could not remove what the interrupted run made in {database}: '
                                               f'{str(err).strip()}') from err
    return {'footprint': {'file': str(path), 'removed': len(todo)}}


def _exists(conn, cat: str, oid: int) -> bool:
    return conn.execute(sql.SQL('SELECT EXISTS (SELECT FROM pg_catalog.{} WHERE oid = %s)').format(
        sql.Identifier(cat)), [oid]).fetchone()[0]
