"""Compare a source database with its copy: row counts, objects by kind, sequences, extensions and,
optionally, an order-independent checksum of every table's rows."""
from concurrent.futures import ThreadPoolExecutor

from psycopg import sql

from azext_pgdump.pg import catalog

# User objects only: not the catalogs, not TOAST, not what extensions own.
_USER_NS = ("n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' "
            "AND n.nspname NOT LIKE 'pg_temp%'")
_NOT_EXTENSION = "NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = {oid} AND d.deptype = 'e')"

OBJECT_QUERIES = {
    'tables': "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
              f"WHERE c.relkind IN ('r', 'p') AND {_USER_NS} AND {_NOT_EXTENSION.format(oid='c.oid')}",
    'views': "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
             f"WHERE c.relkind = 'v' AND {_USER_NS} AND {_NOT_EXTENSION.format(oid='c.oid')}",
    'materializedViews': "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                         f"WHERE c.relkind = 'm' AND {_USER_NS}",
    'indexes': "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
               f"WHERE c.relkind IN ('i', 'I') AND {_USER_NS} AND {_NOT_EXTENSION.format(oid='c.oid')}",
    'sequences': "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                 f"WHERE c.relkind = 'S' AND {_USER_NS} AND {_NOT_EXTENSION.format(oid='c.oid')}",
    'constraints': "SELECT count(*) FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace "
                   f"WHERE {_USER_NS}",
    'functions': "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                 f"WHERE {_USER_NS} AND {_NOT_EXTENSION.format(oid='p.oid')}",
    'triggers': "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                f"JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT t.tgisinternal AND {_USER_NS}",
    'types': "SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
             "LEFT JOIN pg_class c ON c.oid = t.typrelid "
             f"WHERE t.typtype IN ('c', 'd', 'e', 'r', 'm') AND (c.oid IS NULL OR c.relkind = 'c') AND {_USER_NS} "
             f"AND {_NOT_EXTENSION.format(oid='t.oid')}",
}
_TABLES = ("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
           f"WHERE c.relkind IN ('r', 'm') AND {_USER_NS} AND {_NOT_EXTENSION.format(oid='c.oid')} ORDER BY 1, 2")
# Order-independent: the sum of a 60-bit slice of each row's md5.
_CHECKSUM = "SELECT coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)::bigint), 0)::text FROM {} t"


def in_snapshot(conn, snapshot):
    """Make `conn` see the database as the transaction that exported `snapshot` sees it."""
    if snapshot:
        conn.execute('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
        conn.execute(sql.SQL('SET TRANSACTION SNAPSHOT {}').format(sql.Literal(snapshot)))
    return conn


def _table_rows(endpoint, dbname, tables, checksum, snapshot=None) -> dict:
    with catalog.connect(endpoint, dbname) as conn:
        in_snapshot(conn, snapshot)
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
        objects = {kind: conn.execute(q).fetchone()[0] for kind, q in OBJECT_QUERIES.items()}
        extensions = dict(conn.execute('SELECT extname, extversion FROM pg_extension').fetchall())
        sequences = {f'{s}.{n}': v for s, n, v in conn.execute(
            'SELECT schemaname, sequencename, last_value FROM pg_sequences').fetchall()}
        tables = conn.execute(_TABLES).fetchall()
    # Counting is the slow part: split the tables over `jobs` connections.
    chunks = [tables[i::jobs] for i in range(max(jobs, 1))]
    with ThreadPoolExecutor(max_workers=max(jobs, 1)) as pool:
        rows = {}
        for part in pool.map(lambda chunk: _table_rows(endpoint, dbname, chunk, checksum, snapshot), chunks):
            rows.update(part)
    return {'objects': objects, 'extensions': extensions, 'sequences': sequences, 'rows': rows}


def compare(dbname: str, source: dict, target: dict) -> dict:
    differences, tables = [], []
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
        if target['extensions'].get(name) != version:
            differences.append(f"extension {name} {version}: target has {target['extensions'].get(name)}")
    for name in sorted(set(source['sequences']) | set(target['sequences'])):
        if source['sequences'].get(name) != target['sequences'].get(name):
            differences.append(f"sequence {name}: last value {source['sequences'].get(name)} on the source, "
                               f"{target['sequences'].get(name)} on the target")
    return {'name': dbname, 'status': 'failed' if differences else 'passed', 'differences': differences,
            'objects': {'source': source['objects'], 'target': target['objects']}, 'tables': tables}


def verify(source, target, databases: list, checksum: bool = False, jobs: int = 2) -> dict:
    results = [compare(db, inventory(source, db, checksum, jobs), inventory(target, db, checksum, jobs))
               for db in databases]
    return {'status': 'failed' if any(r['status'] == 'failed' for r in results) else 'passed',
            'checksum': checksum, 'databases': results}
