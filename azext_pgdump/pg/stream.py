"""The data of `run --method stream`: every table copied straight from source to target by `jobs`
workers, largest first, all reading the one snapshot pg_dump read the schema in; each table's indexes
and key constraints built on the target as soon as its data is in (its indexes by whichever workers are
free), while other tables still load.

A worker holds one source and one target connection for all the tables it copies (a TLS login costs
tens of milliseconds; thousands of tables must not cost thousands of logins). COPY blocks pass through
unparsed: binary for tables of built-in types, text (which crosses any major versions) for the others."""
import json
import os
import subprocess
import tempfile
import threading
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import psycopg
from psycopg import sql

from azext_pgdump.pg import catalog, children
from azext_pgdump.pg.endpoint import Endpoint
from azext_pgdump.pg.progress import status_text
from azext_pgdump.pg.sql import user_object
from azext_pgdump.pg.workdir import private_file

# Tables at least this large go psql -> psql (two logins, no Python per row); smaller ones through the
# worker's own connections. Measured (py-spy, the benchmark's realistic shape): the relay costs about 5 us of
# client CPU per row; a login ~30 ms. 1 MB instead was no faster there and cost 8 more logins and 40 MB.
PIPE_THRESHOLD = 8 << 20
FREEZE_FROM = 1 << 20   # bytes: smaller tables load without FREEZE (see _Worker.copy)


def _options(options: list) -> sql.Composable:
    return sql.SQL(' ({})'.format(', '.join(options)) if options else '')


class CopyError(Exception):
    """A psql of a COPY pipe failed; the message is its stderr."""


# Settings of the target sessions that load: what a normal Azure login may set, and what speeds a load.
TARGET_SESSION = ["SET synchronous_commit = off", "SET maintenance_work_mem = '256MB'",
                  "SELECT pg_catalog.set_config('search_path', '', false)"]

_TABLES = """
SELECT c.oid, n.nspname, c.relname, pg_relation_size(c.oid), {partition}
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND """ + user_object('pg_class', 'c.oid') + """
ORDER BY 4 DESC, 2, 3"""
_COLUMNS = """
SELECT a.attrelid, a.attname,
       a.atttypid < 16384 AND t.typsend <> 0 AND t.typreceive <> 0 AND coalesce(e.typname, t.typname) !~ '^reg'
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typlen = -1
WHERE a.attrelid = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped {generated} ORDER BY a.attrelid, a.attnum"""
# Indexes and key constraints a plain table can have built right after its data. Left to the final
# pass: indexes of partitions (attached to their parent's), clustered and replica-identity indexes
# (pg_dump adds statements to those entries), invalid ones (pg_dump skips them).
_EARLY = """
SELECT i.indrelid, i.indexrelid, con.oid, con.conname, pg_get_indexdef(i.indexrelid),
       CASE WHEN con.oid IS NOT NULL THEN pg_get_constraintdef(con.oid) END,
       (SELECT relname FROM pg_class WHERE oid = i.indexrelid)
FROM pg_index i LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.contype IN ('p', 'u', 'x')
WHERE i.indrelid = ANY(%s) AND i.indisvalid AND NOT i.indisclustered AND NOT i.indisreplident
  AND (con.oid IS NOT NULL OR NOT EXISTS (SELECT 1 FROM pg_constraint x WHERE x.conindid = i.indexrelid))
ORDER BY i.indrelid, i.indexrelid"""


# For scripts (show-commands): the tables to copy, double-quoted: both a pg_dump pattern that matches
# exactly that table and an SQL name for COPY.
LIST_TABLES_FOR_SCRIPTS = (
    "SELECT format('\"%s\".\"%s\"', replace(n.nspname, '\"', '\"\"'), replace(c.relname, '\"', '\"\"')) "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    f"WHERE c.relkind = 'r' AND {user_object('pg_class', 'c.oid')} ORDER BY pg_relation_size(c.oid) DESC")


# In the plan (and the scripts show-commands prints) pg_dump leaves out every table's data; run
# replaces this with the tables it read in the snapshot, so that materialized views keep their REFRESH.
ALL_TABLE_DATA = '--exclude-table-data=*.*'


def pattern(table) -> str:
    """A pg_dump pattern that matches exactly this table (double quotes make every character literal)."""
    return '.'.join('"' + part.replace('"', '""') + '"' for part in (table.schema, table.name))


@dataclass
class Table:
    oid: int
    schema: str
    name: str
    bytes: int
    columns: list = field(default_factory=list)
    early: list = field(default_factory=list)        # SQL to run on the target after the data
    early_oids: list = field(default_factory=list)   # catalog oids of those objects (their dump entries)
    undo: list = field(default_factory=list)         # SQL that drops them again (a resumed copy starts over)
    # Binary COPY skips turning every value into text on the source and parsing it back on the target. The binary
    # forms of the built-in types (oids below 16384, FirstNormalObjectId) are the same in every supported major
    # version; a table with any other type (an extension's, a domain, an enum), a type without binary I/O, or a
    # reg* type (sent as an oid, which means another object on the target) goes as text, which crosses versions.
    binary: bool = True                              # read_tables clears it unless every column qualifies

    @property
    def qualified(self) -> str:
        return f'{self.schema}.{self.name}'


def read_tables(conn, major: int) -> list:
    """The tables pg_dump would dump data for, read in the caller's snapshot."""
    partition = 'c.relispartition' if major >= 10 else 'false'
    rows = conn.execute(_TABLES.format(partition=partition)).fetchall()
    tables = {r[0]: Table(r[0], r[1], r[2], r[3]) for r in rows}
    partitions = {r[0] for r in rows if r[4]}
    oids = list(tables)
    generated = "AND a.attgenerated = ''" if major >= 12 else ''
    for oid, column, binary in conn.execute(_COLUMNS.format(generated=generated), (oids,)).fetchall():
        tables[oid].columns.append(column)
        tables[oid].binary = tables[oid].binary and binary
    plain = [o for o in oids if o not in partitions]
    for table_oid, index_oid, con_oid, conname, indexdef, condef, index in conn.execute(_EARLY, (plain,)).fetchall():
        table = tables[table_oid]
        alter = sql.SQL('ALTER TABLE ONLY {}.{} ').format(sql.Identifier(table.schema), sql.Identifier(table.name))
        if con_oid is not None:
            table.early.append(alter.as_string(None) + sql.SQL('ADD CONSTRAINT {} ').format(
                sql.Identifier(conname)).as_string(None) + condef)
            table.early_oids.append(con_oid)
            table.undo.append((alter + sql.SQL('DROP CONSTRAINT IF EXISTS {}').format(
                sql.Identifier(conname))).as_string(None))
        else:
            table.early.append(indexdef)
            table.early_oids.append(index_oid)
            table.undo.append(sql.SQL('DROP INDEX IF EXISTS {}.{}').format(
                sql.Identifier(table.schema), sql.Identifier(index)).as_string(None))
    return list(tables.values())


def reset(target: Endpoint, database: str, tables) -> None:
    """Before a resumed copy: the tables it copies again are emptied, and what the interrupted run built
    on them dropped (a kill between a table's data and its last index leaves some built)."""
    with catalog.connect(target, database) as conn:
        for table in tables:
            for statement in table.undo:
                conn.execute(statement)
            conn.execute(sql.SQL('TRUNCATE ONLY {}.{}').format(sql.Identifier(table.schema),
                                                               sql.Identifier(table.name)))


_INT_KEY = """
SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
WHERE i.indrelid = %s AND i.indisprimary AND i.indnatts = 1
  AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)"""


@dataclass
class Part:
    """A table, or a range of it: big tables are copied as ranges in parallel, so that one of them
    does not set the finishing time."""
    table: Table
    where: Optional[sql.Composable] = None   # None: the whole table
    bytes: int = 0
    of: int = 1                              # how many parts the table has


def save_parts(path, parts: list) -> None:
    """The copy's work list, as the list-tables step writes it and the copy reads it (one table's parts share
    one Table)."""
    tables = {p.table.oid: p.table for p in parts}
    data = {'tables': [asdict(t) for t in tables.values()],
            'parts': [{'table': p.table.oid, 'where': p.where.as_string(None) if p.where is not None else None,
                       'bytes': p.bytes, 'of': p.of} for p in parts]}
    private_file(Path(path), json.dumps(data))


def load_parts(path) -> list:
    data = json.loads(Path(path).read_text())
    tables = {t['oid']: Table(**t) for t in data['tables']}
    return [Part(tables[p['table']], sql.SQL(p['where']) if p['where'] is not None else None, p['bytes'], p['of'])
            for p in data['parts']]


def split(conn, tables: list, larger_than: int, parts: int, major: int) -> list:
    """Parts to copy, largest first. A table over `larger_than` bytes becomes `parts` ranges of its
    integer primary key (index range scans), or, from PostgreSQL 14 on, of ctid (TID range scans);
    other tables stay whole."""
    out = []
    for table in tables:
        ranges = _ranges(conn, table, parts, major) if larger_than and table.bytes > larger_than and parts > 1 \
            else None
        if not ranges:
            out.append(Part(table, None, table.bytes))
            continue
        out += [Part(table, where, table.bytes // len(ranges), len(ranges)) for where in ranges]
    return sorted(out, key=lambda p: -p.bytes)


def _ranges(conn, table: Table, parts: int, major: int) -> Optional[list]:
    name = sql.SQL('{}.{}').format(sql.Identifier(table.schema), sql.Identifier(table.name))
    key = conn.execute(_INT_KEY, (table.oid,)).fetchone()
    if key:
        col = sql.Identifier(key[0])
        low, high = conn.execute(sql.SQL('SELECT min({0}), max({0}) FROM {1}').format(col, name)).fetchone()
        if low is None or high - low < parts:
            return None
        bounds = [low + (high - low + 1) * k // parts for k in range(parts)] + [high + 1]
        return [sql.SQL('{} >= {} AND {} < {}').format(col, sql.Literal(a), col, sql.Literal(b))
                for a, b in zip(bounds, bounds[1:])]
    if major < 14:
        return None
    blocks = conn.execute("SELECT pg_relation_size(%s) / current_setting('block_size')::int",
                          (table.oid,)).fetchone()[0]
    bounds = [blocks * k // parts for k in range(parts)]
    conds = [sql.SQL('ctid >= {}::tid AND ctid < {}::tid').format(sql.Literal(f'({a},0)'), sql.Literal(f'({b},0)'))
             for a, b in zip(bounds, bounds[1:])]
    return conds + [sql.SQL('ctid >= {}::tid').format(sql.Literal(f'({bounds[-1]},0)'))]


@dataclass
class CopyResult:
    tables: list = field(default_factory=list)       # per table: name, rows, bytes, seconds
    failed: Optional[dict] = None                    # the first failure: table, error
    connections: int = 0
    early_oids: set = field(default_factory=set)     # what was built here, for the final pass to skip

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != 'early_oids'}


class _Worker:
    def __init__(self, source: Endpoint, target: Endpoint, database: str, snapshot: str, psql: Optional[str] = None):
        self.source, self.target, self.database, self.snapshot, self.psql = source, target, database, snapshot, psql
        self.src = catalog.connect(source, database)
        self.tgt = None
        try:
            self.src.execute('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
            self.src.execute(sql.SQL('SET TRANSACTION SNAPSHOT {}').format(sql.Literal(snapshot)))
            self.tgt = catalog.connect(target, database)
            for statement in TARGET_SESSION:
                self.tgt.execute(statement)
        except BaseException:
            self.close()
            raise

    def copy(self, part: Part) -> dict:
        started, table = time.monotonic(), part.table
        name = sql.SQL('{}.{}').format(sql.Identifier(table.schema), sql.Identifier(table.name))
        cols = sql.SQL(', ').join(sql.Identifier(c) for c in table.columns)
        listed = sql.SQL('{} ({})').format(name, cols) if table.columns else name  # a table may have no column
        source = listed if part.where is None else sql.SQL('(SELECT {} FROM {} WHERE {})').format(
            cols if table.columns else sql.SQL(''), name, part.where)
        freeze = part.of == 1 and part.bytes >= FREEZE_FROM and self._may_empty(name)
        fmt = ['FORMAT binary'] if table.binary else []
        copy_out = sql.SQL('COPY {} TO STDOUT{}').format(source, _options(fmt)).as_string(None)
        copy_in = sql.SQL('COPY {} FROM STDIN{}').format(listed, _options(fmt + ['FREEZE'] * freeze)).as_string(None)
        # A table copied whole is emptied and loaded in one transaction, COPY FREEZE: its rows arrive frozen and
        # (14+) all-visible, so the index builds and first reads do not set hint bits and write every page again,
        # and no anti-wraparound VACUUM rewrites the table later. The ranges of a split table load side by side,
        # so they cannot (FREEZE needs the table emptied in the loading transaction). A small table is not worth
        # the TRUNCATE (a new file, a round trip): its few pages cost nothing to rewrite.
        empty = [sql.SQL('TRUNCATE ONLY {}').format(name).as_string(None)] if freeze else []
        if self.psql and part.bytes >= PIPE_THRESHOLD:
            # the size on the source's disk: the bytes pass between the two psql, not through here
            rows, size, how = self._pipe(copy_out, empty, copy_in), part.bytes, 'pipe'
        else:
            (rows, size), how = self._relay(copy_out, empty, copy_in), 'relay'
        return {'name': table.qualified, 'rows': rows, 'bytes': size, 'via': how, 'frozen': freeze,
                'format': 'binary' if table.binary else 'text', 'seconds': round(time.monotonic() - started, 3)}

    def _may_empty(self, name: sql.Composable) -> bool:
        """TRUNCATE needs its own privilege: a table of a role whose rights the login does not have is only
        inserted into."""
        return bool(self.tgt.execute(sql.SQL("SELECT pg_catalog.has_table_privilege({}, 'TRUNCATE')").format(
            sql.Literal(name.as_string(self.tgt)))).fetchone()[0])

    def _relay(self, copy_out: str, empty: list, copy_in: str) -> tuple:
        """Small tables: through this process, on the worker's own connections (no new login)."""
        size = 0
        # One transaction only when it empties the table first: BEGIN and COMMIT are two more round trips.
        with self.src.cursor().copy(copy_out) as out, self.tgt.transaction() if empty else nullcontext(), \
                self.tgt.cursor() as cur:
            for statement in empty:
                cur.execute(statement)
            with cur.copy(copy_in) as into:
                for block in out:
                    into.write(block)
                    size += len(block)
            return cur.rowcount, size

    def _pipe(self, copy_out: str, empty: list, copy_in: str) -> int:
        """Large tables: psql | psql, the data never in Python (libpq hands COPY data over a row at a time,
        which a Python loop cannot keep up with). The reading psql joins the snapshot."""
        snapshot = sql.SQL('SET TRANSACTION SNAPSHOT {}').format(sql.Literal(self.snapshot)).as_string(None)
        reader = [self.psql, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-c', 'BEGIN ISOLATION LEVEL REPEATABLE READ '
                  'READ ONLY', '-c', snapshot, '-c', copy_out, '-c', 'COMMIT',
                  f'--dbname={self.source.conninfo(self.database)}']
        steps = ['BEGIN', *empty, copy_in, 'COMMIT'] if empty else [copy_in]
        writer = [self.psql, '-X', '-v', 'ON_ERROR_STOP=1', *(a for step in steps for a in ('-c', step)),
                  f'--dbname={self.target.conninfo(self.database)}']
        env = dict(os.environ, PGOPTIONS=self.source.session_options(f'lock_timeout={self.source.lock_wait()}'),
                   **self.source.secret_env())
        # The reader's stderr goes to a file: a pipe nobody reads until the end could fill and stall it.
        with tempfile.TemporaryFile() as reader_err, \
                children.started(reader, stdout=subprocess.PIPE, stderr=reader_err, stdin=subprocess.DEVNULL,
                                 env=env) as out:
            with children.started(writer, stdin=out.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=dict(os.environ, PGOPTIONS=self.target.session_options('synchronous_commit=off'),
                                           **self.target.secret_env())) as into:
                out.stdout.close()  # the writer holds the pipe now; the reader gets SIGPIPE if it dies
                written, into_err = into.communicate()
            out.wait()
            reader_err.seek(0)
            out_err = reader_err.read()
        if out.returncode or into.returncode:
            raise CopyError((out_err or into_err).decode(errors='replace').strip() or 'psql failed')
        # psql printed each command's tag: BEGIN, TRUNCATE TABLE, COPY <rows>, COMMIT
        return next((int(line.split()[1]) for line in written.decode().splitlines() if line.startswith('COPY ')), 0)

    def close(self):
        for conn in (self.src, self.tgt):
            if conn is not None:
                conn.close()


class Estimate:
    """How far the copy is, by the tables' sizes on the source's disk, and how long the rest should take at the
    rate so far (it converges as tables finish; largest first makes the early rate pessimistic, not wild)."""

    def __init__(self, total: int, clock=time.monotonic):
        self.total, self.done, self.clock, self.started = max(total, 1), 0, clock, clock()

    def add(self, size: int) -> None:
        self.done += size

    def left_seconds(self) -> Optional[float]:
        if self.done < self.total / 10:  # small tables first tell nothing of the rate of the big ones
            return None
        return (self.clock() - self.started) * max(self.total - self.done, 0) / self.done

    def __str__(self) -> str:
        left = self.left_seconds()
        share = f'{min(self.done / self.total, 1):.0%} of {self.total / 1048576:.0f} MB'
        return share if left is None or self.done >= self.total else f'{share}, about {left:.0f}s left'


# What the target's COPYs have taken in so far (PostgreSQL 14+), for the status line between tables.
_IN_FLIGHT = """SELECT coalesce(sum(bytes_processed), 0) FROM pg_stat_progress_copy
WHERE datid = (SELECT oid FROM pg_database WHERE datname = current_database())"""


def _watch(progress, target: Endpoint, database: str, eta: Estimate, counts: Callable[[], tuple],
           stop: threading.Event) -> Optional[threading.Thread]:
    """On a terminal only (nobody reads a status line in a pipeline's log): every second, the share copied
    (finished tables, plus what the running COPYs have taken in), tables done / copying / waiting, time left."""
    if not getattr(progress, 'live', False):
        return None

    def loop():
        conn = None
        try:
            conn = catalog.connect(target, database)
        except (psycopg.Error, catalog.ConnectError):
            pass  # the status line does without the bytes in flight
        while not stop.wait(1.0):
            flight = 0
            if conn is not None:
                try:
                    flight = conn.execute(_IN_FLIGHT).fetchone()[0]
                except psycopg.Error:  # before 14 there is no pg_stat_progress_copy
                    conn.close()
                    conn = None
            progress.status(status_text(database, *counts(), eta.left_seconds()), eta.done + int(flight), eta.total)
        if conn is not None:
            conn.close()
        progress.end()
    thread = threading.Thread(target=loop, daemon=True, name=f'{database}/status')
    thread.start()
    return thread


def copy_tables(source: Endpoint, target: Endpoint, database: str, snapshot: str, parts: list, jobs: int,
                progress: Callable[[str], None], psql: Optional[str] = None,
                on_table: Callable[[dict], None] = lambda entry: None) -> CopyResult:
    """Copy `parts` (largest first) with `jobs` workers. The worker that copies a table's last part adds its key
    constraints, then its other indexes are built by whichever workers are free (as pg_restore -j does), so a
    big table's indexes do not queue behind each other at the end; `on_table` hears of a table once its data
    and indexes are in. All stop at the first failure, or when the run stops."""
    board = _Board(parts, progress, on_table)

    def work():
        try:
            worker = _Worker(source, target, database, snapshot, psql)
        except (psycopg.Error, catalog.ConnectError) as err:
            board.fail(None, err)
            return
        board.connected()
        try:
            while (item := board.take()) is not None:
                kind, what = item
                try:
                    if kind == 'index':
                        started = time.monotonic()
                        worker.tgt.execute(what[1])
                        board.index_built(what[0], time.monotonic() - started)
                    else:
                        board.part_copied(what, worker.copy(what), worker)
                except (psycopg.Error, CopyError, OSError) as err:
                    board.fail((what[0] if kind == 'index' else what.table).qualified, err)
                    return
                finally:
                    board.release()
        finally:
            worker.close()

    threads = [threading.Thread(target=work, daemon=True) for _ in range(max(1, min(jobs, len(parts))))]
    for thread in threads:
        thread.start()
    watched = threading.Event()
    watcher = _watch(progress, target, database, board.eta, board.counts, watched)
    for thread in threads:
        thread.join()
    if watcher is not None:
        watched.set()
        watcher.join(timeout=5)
    return board.result


class _Board:
    """What the copy's workers share: parts to copy, indexes to build (taken first: they end a table), and
    each table's record until its data and indexes are all in."""

    def __init__(self, parts: list, progress, on_table):
        self.parts, self.indexes = list(parts), []
        self.progress, self.on_table = progress, on_table
        self.result, self.cond, self.stop = CopyResult(), threading.Condition(), threading.Event()
        self.parts_left = {p.table.oid: p.of for p in parts}
        self.indexes_left: dict = {}
        self.merged: dict = {}
        self.total, self.eta = len(self.parts_left), Estimate(sum(p.bytes for p in parts))
        self.busy = 0          # items being worked on
        self.constraining = 0  # tables whose key constraints are being added: their indexes are coming

    def counts(self) -> tuple:
        with self.cond:
            return len(self.result.tables), self.busy, len(self.parts)

    def connected(self) -> None:
        with self.cond:
            self.result.connections += 2

    def take(self):
        """The next item, or None when there is nothing left (or the copy stops)."""
        with self.cond:
            while not (self.stop.is_set() or children.stopping()):
                if self.indexes:
                    self.busy += 1
                    return 'index', self.indexes.pop(0)
                if self.parts:
                    self.busy += 1
                    return 'part', self.parts.pop(0)
                if not self.constraining:
                    return None
                self.cond.wait(0.5)
            return None

    def release(self) -> None:
        with self.cond:
            self.busy -= 1
            self.cond.notify_all()

    def fail(self, table, err) -> None:
        with self.cond:
            self.result.failed = self.result.failed or {'table': table, 'error': str(err).strip()}
            self.stop.set()
            self.cond.notify_all()

    def part_copied(self, part: Part, done: dict, worker) -> None:
        table = part.table
        with self.cond:
            entry = self.merged.setdefault(table.oid, dict(done, rows=0, bytes=0, parts=part.of, indexSeconds=0.0,
                                                           indexesBuilt=len(table.early)))
            entry['rows'] += done['rows'] or 0
            entry['bytes'] += done['bytes'] or 0
            entry['seconds'] = max(entry['seconds'], done['seconds'])
            self.eta.add(part.bytes)
            self.parts_left[table.oid] -= 1
            if self.parts_left[table.oid]:
                return
            self.constraining += 1
        # Key constraints take an exclusive lock: added here, before the table's indexes go to the board.
        started = time.monotonic()
        try:
            for statement in table.early:
                if statement.startswith('ALTER TABLE'):
                    worker.tgt.execute(statement)
        finally:
            with self.cond:
                self.constraining -= 1
                self.cond.notify_all()
        indexes = [s for s in table.early if not s.startswith('ALTER TABLE')]
        with self.cond:
            entry['indexSeconds'] += time.monotonic() - started
            self.indexes_left[table.oid] = len(indexes)
            self.indexes += [(table, s) for s in indexes]
            self.cond.notify_all()
        if not indexes:
            self._table_done(table)

    def index_built(self, table: Table, seconds: float) -> None:
        with self.cond:
            self.merged[table.oid]['indexSeconds'] += seconds
            self.indexes_left[table.oid] -= 1
            if self.indexes_left[table.oid]:
                return
        self._table_done(table)

    def _table_done(self, table: Table) -> None:
        with self.cond:
            entry = self.merged[table.oid]
            entry['indexSeconds'] = round(entry['indexSeconds'], 3)
            self.result.tables.append(entry)
            self.result.early_oids.update(table.early_oids)
            self.progress(f'  copied {entry["name"]}: {entry["rows"]} rows, {entry["bytes"]} bytes in '
                          f'{entry["seconds"]:.1f}s ({len(self.result.tables)}/{self.total} tables, {self.eta})')
        self.on_table(entry)
