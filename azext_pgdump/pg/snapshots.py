"""The source read in one snapshot per database: pg_dump reads it (--snapshot), the stream copy reads it, and
verify counts the source in it, so writes during the migration cannot raise false alarms."""
from dataclasses import replace
from pathlib import Path
from typing import Optional

import psycopg
from psycopg import sql

from azext_pgdump.pg import catalog, online, stream
from azext_pgdump.pg import verify as verification
from azext_pgdump.pg.steps import Step


class Snapshots:
    """With verification: one open source transaction per database. pg_dump reads its snapshot (--snapshot)
    and verify counts the source in it, so writes during the migration cannot raise false alarms."""

    def __init__(self, plan, enabled: bool, published: Optional[dict] = None):
        self.plan, self.open = plan, {}
        # run --online: database -> what its publish step made; its snapshot is the one its slot exports
        self.published, self.slots = published if published is not None else {}, {}
        self.enabled = enabled and plan.source is not None   # --verify
        # The stream method reads everything in one snapshot, verified or not.
        self.exporting = self.enabled or (plan.opts.method == 'stream' and plan.source is not None)

    def snapshot(self, database: str) -> Optional[str]:
        return self.open.get(database, (None, None))[1]

    def export(self, database: str):
        """The database's snapshot, exported once: its connection holds it open for the steps that read it."""
        if database in self.open:
            return self.open[database]
        made = self.published.get(database)
        conn = catalog.connect(self.plan.source, database)  # ConnectError: the step fails
        try:
            if made:   # the slot's own snapshot: the copy ends exactly where the subscription will begin
                self.slots[database], snapshot, _ = online.create_slot(self.plan.source, database, made['slot'],
                                                                       self.plan.source_major)
            conn.execute('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
            if made:
                conn.execute(sql.SQL('SET TRANSACTION SNAPSHOT {}').format(sql.Literal(snapshot)))
            else:
                snapshot = conn.execute('SELECT pg_export_snapshot()').fetchone()[0]
        except psycopg.Error as err:  # a lock held past --timeout, a lost server: the step fails
            conn.close()
            self._close_slot(database)
            raise catalog.ConnectError(f'Could not read {database} in one snapshot: {str(err).strip()}') from err
        self.open[database] = (conn, snapshot)
        return conn, snapshot

    def list_tables(self, database: str, path: Path) -> dict:
        """The stream method's list-tables step: the tables (and ranges of big ones) the copy moves, as read in
        the snapshot, into the file the schema dump and the copy read."""
        conn, _ = self.export(database)
        try:
            conn.execute("SELECT pg_catalog.set_config('search_path', '', false)")
            tables = stream.read_tables(conn, self.plan.source_major)
            opts = self.plan.opts
            parts = stream.split(conn, tables, opts.split_bytes, opts.jobs, self.plan.source_major)
        except psycopg.Error as err:
            self.release(database)
            raise catalog.ConnectError(f'Could not list the tables of {database}: {str(err).strip()}') from err
        stream.save_parts(path, parts)
        return {}

    def step_for(self, step: Step) -> Step:
        """A dump reads the database's snapshot; the stream method's schema leaves out the data of exactly the
        tables its list-tables step listed (not the materialized views, whose REFRESH it must keep)."""
        if not self.exporting or not step.writes_dump or not step.database:
            return step
        argv = step.argv + [f'--snapshot={self.export(step.database)[1]}']
        if stream.ALL_TABLE_DATA in argv:
            tables = {p.table.oid: p.table for p in stream.load_parts(step.input)}.values()
            argv = [a for a in argv if a != stream.ALL_TABLE_DATA] + \
                [f'--exclude-table-data={stream.pattern(t)}' for t in tables]
        return replace(step, argv=argv)

    def verify(self, database: str) -> dict:
        _, snapshot = self.open.get(database, (None, None))
        jobs = self.plan.opts.jobs
        try:
            source = verification.inventory(self.plan.source, database, jobs=jobs, snapshot=snapshot)
            target = verification.inventory(self.plan.target, database, jobs=jobs)
            return verification.compare(database, source, target, live_source=True)
        except (psycopg.Error, catalog.ConnectError) as err:
            return {'name': database, 'status': 'failed', 'differences': [f'verification failed: {err}'],
                    'notes': [], 'tables': []}
        finally:
            self.release(database)

    def release(self, database: str) -> None:
        conn, _ = self.open.pop(database, (None, None))
        if conn is not None:
            conn.close()
        self._close_slot(database)

    def _close_slot(self, database: str) -> None:
        """The replication connection that made the slot lets it go: the subscription may use it now."""
        repl = self.slots.pop(database, None)
        if repl is not None:
            repl.close()

    def close(self) -> None:
        for database in list(self.open):
            self.release(database)
