"""The source read in one snapshot per database: pg_dump reads it (--snapshot), the stream copy reads it, and
verify counts the source in it, so writes during the migration cannot raise false alarms."""
from dataclasses import replace
from typing import Optional

import psycopg

from azext_pgdump.pg import catalog, stream
from azext_pgdump.pg import verify as verification
from azext_pgdump.pg.steps import Step


class Snapshots:
    """With verification: one open source transaction per database. pg_dump reads its snapshot (--snapshot)
    and verify counts the source in it, so writes during the migration cannot raise false alarms."""

    def __init__(self, plan, enabled: bool):
        self.plan, self.open, self.tables = plan, {}, {}
        self.enabled = enabled and plan.source is not None   # --verify
        # The stream method reads everything in one snapshot, verified or not.
        self.exporting = self.enabled or (plan.opts.method == 'stream' and plan.source is not None)

    def snapshot(self, database: str) -> Optional[str]:
        return self.open.get(database, (None, None))[1]

    def step_for(self, step: Step) -> Step:
        if not self.exporting or not step.writes_dump or not step.database:
            return step
        conn = catalog.connect(self.plan.source, step.database)  # ConnectError: the step fails
        try:
            conn.execute('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
            snapshot = conn.execute('SELECT pg_export_snapshot()').fetchone()[0]
            self.open[step.database] = (conn, snapshot)
            argv = step.argv + [f'--snapshot={snapshot}']
            if stream.ALL_TABLE_DATA in argv:  # the stream method's schema: its tables are copied, not dumped
                argv = self._without_table_data(step.database, conn, argv)
        except psycopg.Error as err:  # a lock held past --timeout, a lost server: the step fails
            self.release(step.database)
            conn.close()
            raise catalog.ConnectError(f'Could not read {step.database} in one snapshot: {str(err).strip()}') \
                from err
        return replace(step, argv=argv)

    def _without_table_data(self, database, conn, argv) -> list:
        """The stream method copies the tables' data itself: pg_dump leaves out exactly those (not the
        materialized views, whose REFRESH it must keep), as read in the snapshot."""
        conn.execute("SELECT pg_catalog.set_config('search_path', '', false)")
        tables = stream.read_tables(conn, self.plan.source_major)
        opts = self.plan.opts
        self.tables[database] = stream.split(conn, tables, opts.split_bytes, opts.jobs, self.plan.source_major)
        excludes = [f'--exclude-table-data={stream.pattern(t)}' for t in tables]
        return [a for a in argv if a != stream.ALL_TABLE_DATA] + excludes

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

    def close(self) -> None:
        for database in list(self.open):
            self.release(database)
