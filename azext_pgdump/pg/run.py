"""Execute a plan (`run`, `dump`, `restore`): the graph's steps through the one scheduler, each step's
outcome recorded in the result and, as it happens, in the work dir's manifest (state per step, the tables
a stream copy finished), so that `run --resume` does not do again what is done."""
import copy
import json
import os
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable, Optional

import psycopg

from azext_pgdump.pg import catalog, children, dumpclean, errorlog, inprocess, steps as make, stream, workdir
from azext_pgdump.pg import verify as verification
from azext_pgdump.pg.scheduler import Scheduler
from azext_pgdump.pg.planner import MANIFEST_FORMAT, Plan
from azext_pgdump.pg.steps import Step
from azext_pgdump.pg.process import Runner, human, size_of

# A stream copy of thousands of small tables must not rewrite the manifest thousands of times: the small
# tables finished in the last second are copied again after a kill -9, which is cheap and correct.
TABLES_SAVE_INTERVAL = 1.0


def manifest(plan: Plan, status: str) -> dict:
    fmt = 'plain' if plan.opts.method == 'plain' else 'directory'
    return {'format': MANIFEST_FORMAT, 'tool': 'azext_pgdump', 'status': status, 'mode': plan.mode,
            'method': plan.opts.method, 'utilitiesMajor': plan.tools.major, 'updatedAt': time.time(),
            'source': None if plan.source is None else {'server': plan.source.name, 'major': plan.source_major},
            'databases': (plan.resumed.done_entries if plan.resumed else []) + [
                {'database': asdict(d), 'format': fmt,
                 'dump': make.files_for(plan.workdir, d.name, plan.opts.method).dump.name,
                 **({'properties': plan.properties[d.name].as_dict()} if d.name in (plan.properties or {}) else {})}
                for d in plan.databases]}


def _mask(text: str, secrets: list) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, '********')
    return text


class _Report:
    def __init__(self, plan: Plan):
        self.plan = plan
        self.roles = {'status': 'skipped'} if not plan.opts.roles else {'status': 'pending'}
        self.dbs = {d.name: {'name': d.name, 'status': 'pending', 'method': plan.opts.method, 'durations': {},
                             **(plan.notes or {}).get(d.name, {})}
                    for d in plan.databases}
        self.last_step = {s.database: s for s in plan.steps if s.database}
        self.exits = {}   # database -> exit codes of the restore's passes so far
        # step id -> {'status': running|done|failed, ...}: what --resume reads. Steps an earlier run
        # finished keep their record, so that a run resumed twice still knows them.
        self.tasks = {i: t for i, t in (plan.resumed.tasks if plan.resumed else {}).items() if i in plan.skip}
        for db in self.dbs.values():
            skipped = [s.name for s in plan.steps if s.database == db['name'] and s.id in plan.skip]
            if skipped:
                db['resumedSteps'] = skipped

    def record(self, step: Step) -> Optional[dict]:
        return self.dbs.get(step.database) if step.database else self.roles

    def failed(self) -> bool:
        return self.roles['status'] == 'failed' or any(d['status'] == 'failed' for d in self.dbs.values())

    def as_dict(self, started: float) -> dict:
        resumed = self.plan.resumed
        carried = [dict(d, resumed='finished by an earlier run; not migrated again') for d in resumed.done] \
            if resumed else []
        extra = {'resumed': {
            'finishedBefore': [d['name'] for d in resumed.done], 'migratedNow': resumed.todo,
            'note': 'The databases migrated now read the source in a new snapshot, not the one of the earlier run: '
                    'run `az postgres dumprestore verify` (or run --verify) if the source was written to meanwhile.'}} \
            if resumed else {}
        return {'status': 'failed' if self.failed() else 'succeeded', 'mode': self.plan.mode, **extra,
                'workDir': str(self.plan.workdir), 'method': self.plan.opts.method, 'jobs': self.plan.opts.jobs,
                'utilities': {'version': self.plan.tools.version, 'bindir': str(self.plan.tools.bindir)},
                'sourceMajor': self.plan.source_major, 'targetMajor': self.plan.target_major,
                'roles': self.roles, 'databases': carried + list(self.dbs.values()),
                'durationSeconds': round(time.monotonic() - started, 2)}


class _Snapshots:
    """With verification: one open source transaction per database. pg_dump reads its snapshot (--snapshot)
    and verify counts the source in it, so writes during the migration cannot raise false alarms."""

    def __init__(self, plan: Plan, enabled: bool):
        self.plan, self.open, self.tables = plan, {}, {}
        self.enabled = enabled and plan.source is not None   # --verify
        # The stream method reads everything in one snapshot, verified or not.
        self.exporting = self.enabled or (plan.opts.method == 'stream' and plan.source is not None)

    def snapshot(self, database: str) -> Optional[str]:
        return self.open.get(database, (None, None))[1]

    def step_for(self, step: Step) -> Step:
        if not self.exporting or step.name not in ('dump', 'transfer', 'dump-schema'):
            return step
        conn = catalog.connect(self.plan.source, step.database)  # ConnectError: the step fails
        try:
            conn.execute('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
            snapshot = conn.execute('SELECT pg_export_snapshot()').fetchone()[0]
            self.open[step.database] = (conn, snapshot)
            argv = step.argv + [f'--snapshot={snapshot}']
            if step.name == 'dump-schema':
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


def execute(plan: Plan, progress: Callable[[str], None], interval: float = 10.0, verify: bool = False) -> dict:
    return _Run(plan, progress, interval, verify).execute()


class _Run:
    """One execution of a plan. Steps run on the scheduler's threads: what they record goes through
    `self.lock`, and their work (the utilities, the copy) outside it."""

    def __init__(self, plan: Plan, progress: Callable[[str], None], interval: float, verify: bool):
        self.plan, self.progress, self.verify = plan, progress, verify
        self.secrets = [p for p in (ep.current_password() for ep in (plan.source, plan.target) if ep) if p]
        self.runner = Runner({'source': plan.source, 'target': plan.target}, progress, interval)
        self.report, self.started = _Report(plan), time.monotonic()
        self.snapshots = _Snapshots(plan, verify)
        self.lock = threading.RLock()
        self.saved_at = 0.0

    def execute(self) -> dict:
        plan = self.plan
        children.reset()
        self.save('running')
        jobs = plan.opts.jobs
        scheduler = Scheduler(plan.steps, {'source': jobs, 'target': jobs}, self.step, done=plan.skip)
        try:
            scheduler.run()
        except (KeyboardInterrupt, SystemExit):
            # Ctrl-C, SIGTERM or SIGHUP: the children are stopped already (scheduler); say where it stopped.
            by_id = {s.id: s for s in plan.steps}
            running = [by_id[i] for i in scheduler.interrupted]
            self.save('interrupted', interruptedSteps=[s.id for s in running], interruptedStep=running and {
                'name': running[0].name, 'database': running[0].database} or None)
            raise
        finally:
            self.snapshots.close()
        out = self.report.as_dict(self.started)
        if self.verify:
            checked = [d['verify'] for d in out['databases'] if 'verify' in d]
            out['verify'] = {'status': 'failed' if any(c['status'] == 'failed' for c in checked) else 'passed',
                             'databases': checked}
        if plan.mode == 'restore':
            try:
                inprocess.write_private(plan.workdir / 'restore-result.json', summary_json(out).encode())
            except OSError as err:
                self.progress(f'Could not write restore-result.json: {err.strerror or err}')
        else:
            self.save(out['status'], result=out)
        return out

    def save(self, status: str, **extra) -> None:
        """Written as it happens: after a kill -9 (no chance to write anything), --resume still knows which
        steps and tables were finished and which half-made databases on the target are ours to drop. A full
        disk must not turn a failed step into a traceback: the previous manifest stays (it says "running",
        and a run whose process is gone is resumed as interrupted). A restore never rewrites what the dump
        wrote."""
        if self.plan.mode == 'restore':
            return
        with self.lock:
            self.saved_at = time.monotonic()
            data = dict(manifest(self.plan, status), tasks=copy.deepcopy(self.report.tasks), **extra)
            if status == 'running':
                data['pid'] = os.getpid()
            data.setdefault('result', copy.deepcopy(self.report.as_dict(self.started)))
            try:
                workdir.write_manifest(self.plan.workdir, data)
            except OSError as err:
                self.progress(f'Could not update {workdir.MANIFEST} in {self.plan.workdir}: {err.strerror or err}. '
                              '--resume still continues this run.')

    def step(self, step: Step) -> None:
        """The scheduler's work for one step: run it, record it, save the manifest."""
        record, report = self.report.record(step), self.report
        with self.lock:
            if record['status'] == 'failed':
                return  # an earlier step of this database (or of the roles) failed: nothing more to do
            report.tasks[step.id] = {'status': 'running'}
        self.progress(f'{step.description}...')
        started = time.monotonic()
        if step.name == 'copy':
            self._copy(step, record)
        elif step.in_process:
            self._in_process(step, record)
        else:
            self._process(step, record)
        with self.lock:
            failed = record['status'] == 'failed'
            report.tasks[step.id].update(status='failed' if failed else 'done',
                                         seconds=round(time.monotonic() - started, 2))
        if step.database and not failed and report.last_step.get(step.database) is step:
            self._finish_database(step, record)
        self.save('running')

    def _in_process(self, step: Step, record: dict) -> None:
        try:
            out = inprocess.run_step(step)
        except (OSError, ValueError) as err:
            out = {'status': 'failed', 'failedStep': step.name, 'error': str(err)}
        with self.lock:
            if 'leftOut' in out:
                out = {'leftOut': record.get('leftOut', []) + out['leftOut']}
            record.update(out)

    def _copy(self, step: Step, db: dict) -> None:
        """The stream method's data: every table, in the snapshot the schema was dumped in. Resumed, the
        tables an earlier run finished are left as they are; the others are emptied and copied again."""
        plan, snapshots, started = self.plan, self.snapshots, time.monotonic()
        parts = snapshots.tables.pop(step.database)
        resuming = step.database in plan.tables_done
        earlier = plan.tables_done.get(step.database, set())
        done_before = [p for p in parts if p.table.qualified in earlier]
        parts = [p for p in parts if p.table.qualified not in earlier]
        with self.lock:
            self.report.tasks[step.id]['tablesDone'] = sorted(earlier)
        try:
            if resuming:
                stream.reset(plan.target, step.database, {p.table.oid: p.table for p in parts}.values())
            result = stream.copy_tables(plan.source, plan.target, step.database, snapshots.snapshot(step.database),
                                        parts, plan.opts.jobs, self.progress, psql=plan.tools.path('psql'),
                                        on_table=lambda entry: self._table_done(step, entry))
        except (psycopg.Error, catalog.ConnectError) as err:
            result = stream.CopyResult(failed={'table': None, 'error': str(err).strip()})
        if children.stopping():
            raise children.Stopped('interrupted')
        for part in done_before:
            result.early_oids.update(part.table.early_oids)
        with self.lock:
            db['durations']['copy'] = round(time.monotonic() - started, 2)
            db.update(copy=result.as_dict(), dumpBytes=sum(t['bytes'] for t in result.tables))
            if resuming:
                db['copy']['tablesResumed'] = len({p.table.oid for p in done_before})
            if result.failed:
                db.update(status='failed', failedStep='copy',
                          error=f"{result.failed['table'] or 'connecting'}: {result.failed['error']}")
        if result.failed:
            snapshots.release(step.database)
            return
        if not snapshots.enabled:  # nothing reads the snapshot any more: do not hold the source's horizon back
            snapshots.release(step.database)
        # The final pass skips what the workers built already.
        kept = [line for line in Path(step.input).read_text(encoding='utf-8').splitlines()
                if not _built(line, result.early_oids)]
        inprocess.write_private(Path(step.output), ''.join(f'{line}\n' for line in kept).encode())

    def _table_done(self, step: Step, entry: dict) -> None:
        with self.lock:
            self.report.tasks[step.id]['tablesDone'].append(entry['name'])
            # A table that took longer than a manifest write is worth one; small ones are saved in batches.
            due = time.monotonic() - self.saved_at >= TABLES_SAVE_INTERVAL or \
                entry['seconds'] + entry.get('indexSeconds', 0) >= TABLES_SAVE_INTERVAL / 4
        if due:
            self.save('running')

    def _finish_database(self, step: Step, db: dict) -> None:
        with self.lock:
            db['status'] = 'succeeded'
        if self.snapshots.enabled and self.plan.mode != 'dump':
            self.progress(f'Verifying {step.database} against the source...')
            checked = self.snapshots.verify(step.database)
            with self.lock:
                db['verify'] = checked
                if checked['status'] == 'failed':
                    db.update(status='failed', failedStep='verify', error='; '.join(checked['differences'][:3]))

    def _process(self, step: Step, record: dict) -> None:
        try:
            result = self.runner.run(self.snapshots.step_for(step))
        except (OSError, catalog.ConnectError) as err:  # a full disk, a file that cannot be written, a lost source
            if children.stopping():
                raise children.Stopped('interrupted') from err
            message = str(err) if isinstance(err, catalog.ConnectError) else \
                f'{err.strerror or err}: {err.filename or ""}'.rstrip(': ')
            with self.lock:
                record.update(status='failed', failedStep=step.name, error=message)
            self.progress(f'  {step.id}: FAILED: {message}')
            if step.database:
                self.snapshots.release(step.database)
            return
        if children.stopping():  # stopped by us, not failed: the manifest says "interrupted"
            raise children.Stopped('interrupted')
        self.progress(f'  {step.id}: {"done" if result.returncode == 0 else "FAILED"} in {result.seconds:.1f}s'
                      + (f', {human(result.bytes_written)} written' if step.output else ''))
        error = _mask(result.stderr_tail.strip(), self.secrets)
        with self.lock:
            if not step.database:
                _record_roles_step(record, step, result, error)
                return
            exits = self.report.exits.setdefault(step.database, [])
            _record_db_step(record, step, result, error, _mask(result.pipe.stderr_tail.strip(), self.secrets)
                            if result.pipe else '', exits)
            failed = record['status'] == 'failed'
        if failed:
            self.snapshots.release(step.database)


def _built(line: str, oids: set) -> bool:
    entry = dumpclean.parse_list_line(line)
    return entry is not None and entry.desc in ('INDEX', 'CONSTRAINT') and entry.oid in oids


def _record_db_step(db: dict, step: Step, result, error: str, pipe_error: str, exits: list) -> None:
    # pylint: disable=too-many-arguments
    db['durations'][step.name] = round(result.seconds, 2)
    if step.name in ('dump', 'transfer', 'dump-schema'):
        db.update(dumpBytes=result.bytes_written, dumpPath=step.output)
    if step.name == 'transfer':
        if result.left_out:
            db['leftOut'] = db.get('leftOut', []) + [{'object': x, 'reason': dumpclean.reason(x)}
                                                     for x in result.left_out]
        _record_log(db, step.pipe, max(result.pipe.returncode, 0), pipe_error, 'restore')
        if result.returncode != 0 and db['status'] != 'failed':
            db.update(status='failed', failedStep='dump', error=error)
    elif step.name in ('restore-schemas', 'restore-pre'):
        exits.append(result.returncode)  # judged with the last pass, whose log it shares
    elif step.name == 'restore':
        db.setdefault('dumpPath', step.input)
        db.setdefault('dumpBytes', size_of(step.input))
        _record_log(db, step, max([result.returncode, *exits]), error, 'restore')
    elif step.name == 'properties':
        _record_log(db, step, result.returncode, error, 'properties', key='propertiesErrors')
    elif result.returncode != 0:
        db.update(status='failed', failedStep=step.name, error=error)
    if step.name in ('dump', 'transfer', 'dump-schema') and db['status'] == 'failed' and 'failedLog' not in db:
        db['failedLog'] = step.stderr


def _record_roles_step(roles_report: dict, step: Step, result, error: str) -> None:
    if step.name == 'roles-restore':
        log = errorlog.read(Path(step.stderr))
        roles_report.update(errors=log.as_dict(), errorsLog=step.stderr)
        failed = log.failed(result.returncode)
        roles_report['status'] = 'failed' if failed else 'succeeded'
        if failed:
            roles_report['error'] = log.first_problem() or error
    elif result.returncode != 0:
        roles_report.update(status='failed', failedStep=step.name, error=error)
    elif step.name == 'roles-dump' and roles_report['status'] == 'pending':
        roles_report.update(status='dumped', rawFile=step.output)


def _record_log(db: dict, step: Step, exit_code: int, error: str, name: str, key: str = 'errors') -> None:
    """Judge a restore's errors log (see errorlog): real errors, or a non-zero exit nothing harmless
    explains, fail the database."""
    log = errorlog.read(Path(step.stderr))
    db.update({key: log.as_dict(), f'{key}Log': step.stderr})
    if log.failed(exit_code):
        db.update(status='failed', failedStep=name, error=log.first_problem() or error, failedLog=step.stderr)


def summary_json(result: dict) -> str:
    return json.dumps(result, indent=2)
