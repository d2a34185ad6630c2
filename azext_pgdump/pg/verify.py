"""Compare a source database with its copy: row counts, objects by kind, sequences, extensions and,
optionally, an order-independent checksum of every table's rows."""
from concurrent.futures import ThreadPoolExecutor

from psycopg import sql

from azext_pgdump.pg import catalog
from azext_pgdump.pg.sql import user_schema, users_own

# A user's objects only (pg/sql.py): not the catalogs, not what extensions own, not what the server made itself.
_USER_NS = user_schema()

OBJECT_QUERIES = {
    'tables': "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
              f"WHERE c.relkind IN ('r', 'p') AND {_USER_NS} AND {users_own('pg_class', 'c.oid')}",
    'views': "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
             f"WHERE c.relkind = 'v' AND {_USER_NS} AND {users_own('pg_class', 'c.oid')}",
    'materializedViews': "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                         f"WHERE c.relkind = 'm' AND {_USER_NS}",
    'indexes': "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
               f"WHERE c.relkind IN ('i', 'I') AND {_USER_NS} AND {users_own('pg_class', 'c.oid')}",
    'sequences': "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                 f"WHERE c.relkind = 'S' AND {_USER_NS} AND {users_own('pg_class', 'c.oid')}",
    # PostgreSQL 18 also stores NOT NULL as constraints: count the kinds every version has.
    'constraints': "SELECT count(*) FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace "
                   f"WHERE k.contype IN ('c', 'f', 'p', 'u', 't', 'x') AND {_USER_NS}",
    'functions': "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                 f"WHERE {_USER_NS} AND {users_own('pg_proc', 'p.oid')}",
    'triggers': "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                f"JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT t.tgisinternal AND {_USER_NS} "
                "{no_clones}",
    'types': "SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
             "LEFT JOIN pg_class c ON c.oid = t.typrelid "
             f"WHERE t.typtype IN ('c', 'd', 'e', 'r') AND (c.oid IS NULL OR c.relkind = 'c') AND {_USER_NS} "
             f"AND {users_own('pg_type', 't.oid')}",
}
# Materialized views are not copied but refreshed on the target: their rows are not compared.
_TABLES = ("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
           f"WHERE c.relkind = 'r' AND {_USER_NS} AND {users_own('pg_class', 'c.oid')} ORDER BY 1, 2")
# Order-independent: the sum of a 60-bit slice of each row's md5.
_CHECKSUM = "SELECT coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)::bigint), 0)::text FROM {} t"


def in_snapshot(conn, snapshot):
    """Make `conn` see the database as the transaction that exported `snapshot` sees it."""
    if snapshot:
        conn.execute('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
        conn.execute(sql.SQL('SET TRANSACTION SNAPSHOT {}').format(sql.Literal(snapshot)))
    return conn


# A row's text form depends on these: both sides print rows the same way for the checksum.
_TEXT_SETTINGS = ("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; "
                  "SET bytea_output = 'hex'; SET extra_float_digits = 3")


def _table_rows(endpoint, dbname, tables, checksum, snapshot=None) -> dict:
    with catalog.connect(endpoint, dbname) as conn:
        in_snapshot(conn, snapshot)
        if checksum:
            conn.execute(_TEXT_SETTINGS)
        out = {}
        for schema, name in tables:
            ident = sql.Identifier(schema, name)
            count = conn.execute(sql.SQL('SELECT count(*) FROM {}').format(ident)).fetchone()[0]
            digest = conn.execute(sql.SQL(_CHECKSUM).format(ident)).fetchone()[0] if checksum else None
            out[f'{schema}.{name}'] = (count, digest)
        return out


def inventory(endpoint, dbname: str, checksum: bool = False, jobs: int = 2, snapshot=None) -> dict:
    """With `snapshot` (exported by a transaction still open), rows are counted as that transaction saw them."""
    with catalog.connect(endpoint, dbname) as conn:
        in_snapshot(conn, snapshot)
        # Since PostgreSQL 13 a trigger on a partitioned table is cloned to each partition: count it once.
        no_clones = 'AND t.tgparentid = 0' if catalog.server_major(conn) >= 13 else ''
        objects = {kind: conn.execute(q.replace('{no_clones}', no_clones)).fetchone()[0]
                   for kind, q in OBJECT_QUERIES.items()}
        extensions = dict(conn.execute('SELECT extname, extversion FROM pg_extension').fetchall())
        sequences = {f'{s}.{n}': v for s, n, v in conn.execute(
            'SELECT schemaname, sequencename, last_value FROM pg_sequences').fetchall()}
        tables = conn.execute(_TABLES).fetchall()
    # Counting is the slow part: split the tables over `jobs` connections.
    jobs = max(jobs, 1)
    chunks = [tables[i::jobs] for i in range(jobs)]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        rows = {}
        for part in pool.map(lambda chunk: _table_rows(endpoint, dbname, chunk, checksum, snapshot), chunks):
            rows.update(part)
    return {'objects': objects, 'extensions': extensions, 'sequences': sequences, 'rows': rows}


def compare(dbname: str, source: dict, target: dict, live_source: bool = False) -> dict:
    """Every difference that means the copy is wrong; `notes` for those that do not (an extension at the
    target's default version; with `live_source`, a sequence the source advanced after the dump read it)."""
    differences, notes, tables = [], [], []
    for name in sorted(set(source['rows']) | set(target['rows'])):
        src, tgt = source['rows'].get(name), target['rows'].get(name)
        entry = {'table': name, 'sourceRows': src and src[0], 'targetRows': tgt and tgt[0], 'status': 'same'}
        if src is None or tgt is None:
            entry['status'] = 'missing on target' if tgt is None else 'only on target'
        elif src[0] != tgt[0]:
            entry['status'] = 'row count differs'
        elif src[1] != tgt[1]:
            entry['status'] = 'checksum differs'
        if entry['status'] != 'same':
            differences.append(f"table {name}: {entry['status']} ({entry['sourceRows']} vs {entry['targetRows']})")
        tables.append(entry)
    for kind, count in source['objects'].items():
        if target['objects'].get(kind) != count:
            differences.append(f"{kind}: {count} on the source, {target['objects'].get(kind)} on the target")
    for name, version in source['extensions'].items():
        if name not in target['extensions']:
            differences.append(f'extension {name} is missing on the target')
        elif target['extensions'][name] != version:
            notes.append(f"extension {name}: {version} on the source, {target['extensions'][name]} on the target")
    for name in sorted(set(source['sequences']) | set(target['sequences'])):
        src, tgt = source['sequences'].get(name), target['sequences'].get(name)
        if src != tgt:
            text = f'sequence {name}: last value {src} on the source, {tgt} on the target'
            advanced = live_source and src is not None and tgt is not None and tgt <= src
            (notes if advanced else differences).append(text)
    return {'name': dbname, 'status': 'failed' if differences else 'passed', 'differences': differences,
            'notes': notes, 'objects': {'source': source['objects'], 'target': target['objects']}, 'tables': tables}


def verify(source, target, databases: list, checksum: bool = False, jobs: int = 2) -> dict:
    results = [compare(db, inventory(source, db, checksum, jobs), inventory(target, db, checksum, jobs))
               for db in databases]
    return {'status': 'failed' if any(r['status'] == 'failed' for r in results) else 'passed',
            'checksum': checksum, 'databases': results}
