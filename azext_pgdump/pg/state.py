"""The run's state, and its only writer: what each database, step and table has come to, kept in the work
dir's manifest as it happens (so that `run --resume` knows what is done after any kind of end) and turned
into the result az prints. The result on stdout and the result in the manifest are the same object, built
here at every exit: success, failure, a signal, an unexpected exception.

One vocabulary for the run, the roles, the databases, the steps and the tables (STATUSES). A manifest that
says `running` while its process is gone is read as `interrupted` (see `read`)."""
import copy
import json
import os
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Optional

from azext_pgdump.pg import steps as make
from azext_pgdump.pg.workdir import MANIFEST, WorkDirError, private_file

# 2: one status vocabulary (steps say `succeeded`, not `done`), the result's status is the run's.
FORMAT = 2
READABLE = (1, 2)

PENDING, RUNNING, SUCCEEDED, FAILED, INTERRUPTED, SKIPPED = \
    'pending', 'running', 'succeeded', 'failed', 'interrupted', 'skipped'
STATUSES = (PENDING, RUNNING, SUCCEEDED, FAILED, INTERRUPTED, SKIPPED)
ENDED = (SUCCEEDED, FAILED, SKIPPED)

# The target's parameters a run changes for the load (pg/settings.py), each: pending, applying (asked for, not known
# to have taken), applied, restored (given back, or found as it was), left (someone else changed it during the run:
# kept as they set it), failed (could not be set: the load ran without it), restore-failed (`cleanup` retries it).
# Their own file, written before each change: after a kill -9, `--resume` and `cleanup` give back what it lists.
SETTINGS_FILE = 'target-settings.json'
TO_GIVE_BACK = ('applying', 'applied', 'restore-failed')

# A stream copy of thousands of small tables must not rewrite the manifest thousands of times: the small
# tables finished in the last second are copied again after a kill -9, which is cheap and correct.
TABLES_SAVE_INTERVAL = 1.0


def step_status(task: Optional[dict]) -> Optional[str]:
    """A step's status as recorded by this version or the one before it (which said `done`)."""
    status = (task or {}).get('status')
    return SUCCEEDED if status == 'done' else status


class RunState:
    """What a plan's execution has come to. Steps run on threads: every transition takes the lock."""

    def __init__(self, plan, progress: Callable[[str], None]):
        self.plan, self.progress = plan, progress
        self.lock = threading.RLock()
        self.started, self.saved_at = time.monotonic(), 0.0
        self.status = RUNNING
        self.stop: Optional[dict] = None   # how the run was stopped: signal, the steps under way
        self.error: Optional[str] = None   # an unexpected exception, as the result says it
        self._flush: Optional[threading.Timer] = None   # a pending save of tables copied since the last one
        self.roles = {'status': PENDING if any(s.database is None for s in plan.steps) else SKIPPED}
        self.dbs = {d.name: {'name': d.name, 'status': PENDING, 'method': plan.opts.method, 'durations': {},
                             **(plan.notes or {}).get(d.name, {})}
                    for d in plan.databases}
        self.last_step = {s.database: s for s in plan.steps}   # None: the roles' last step
        planned = plan.tuning.as_dict() if plan.tuning else None
        self.settings = planned and dict(planned, changes=[dict(c, status=PENDING) for c in planned['changes']])
        # step id -> {'status', 'seconds', 'tablesDone'}: what --resume reads. Steps an earlier run finished keep
        # their record, so that a run resumed twice still knows them.
        earlier = plan.resumed.tasks if plan.resumed else {}
        self.tasks = {i: dict(t, status=step_status(t)) for i, t in earlier.items() if i in plan.skip}
        for name, made in (plan.resumed.published if plan.resumed else {}).items():
            if name in self.dbs:   # what an earlier online run made stays known until it is removed or replaced
                self.dbs[name]['online'] = made
        for db in self.dbs.values():
            skipped = [s.name for s in plan.steps if s.database == db['name'] and s.id in plan.skip]
            if skipped:
                db['resumedSteps'] = skipped

    # ----- transitions ---------------------------------------------------------------------------------

    def begin(self) -> None:
        self.save()

    def record_of(self, step) -> dict:
        return self.dbs.get(step.database) if step.database else self.roles

    def step_started(self, step) -> bool:
        """False when an earlier step of its database (or of the roles) failed: nothing more to do there."""
        with self.lock:
            record = self.record_of(step)
            if record['status'] == FAILED:
                return False
            if record['status'] == PENDING:
                record['status'] = RUNNING
            self.tasks[step.id] = {'status': RUNNING}
        self.save()
        return True

    def update(self, step, updates: dict) -> None:
        """What a step found (see record.py), merged into its database's (or the roles') record."""
        with self.lock:
            record = self.record_of(step)
            updates = dict(updates)
            if 'leftOut' in updates:
                updates['leftOut'] = record.get('leftOut', []) + updates['leftOut']
            if 'duration' in updates:
                record.setdefault('durations', {})[step.name] = updates.pop('duration')
            for key, value in updates.pop('defaults', {}).items():
                record.setdefault(key, value)
            record.update(updates)

    def tables_resumed(self, step, names) -> None:
        with self.lock:
            self.tasks[step.id]['tablesDone'] = sorted(names)

    def table_copied(self, step, entry: dict) -> None:
        with self.lock:
            self.tasks[step.id].setdefault('tablesDone', []).append(entry['name'])
            # A table that took longer than a manifest write is worth one; small ones are saved in batches.
            due = time.monotonic() - self.saved_at >= TABLES_SAVE_INTERVAL or \
                entry['seconds'] + entry.get('indexSeconds', 0) >= TABLES_SAVE_INTERVAL / 4
            if not due and self._flush is None:  # the batch is saved within the interval, whatever comes next
                self._flush = threading.Timer(TABLES_SAVE_INTERVAL, self._flush_tables)
                self._flush.daemon = True
                self._flush.start()
        if due:
            self.save()

    def _flush_tables(self) -> None:
        with self.lock:  # held across the save: the final result is never overwritten by a late batch
            self._flush = None
            if self.status == RUNNING:
                self.save()

    def step_ended(self, step, seconds: float) -> bool:
        """The step's task ends as its record says; a database whose last step ended well has succeeded.
        Returns whether the step's database (or the roles) stands failed."""
        with self.lock:
            record = self.record_of(step)
            failed = record['status'] == FAILED
            self.tasks[step.id].update(status=FAILED if failed else SUCCEEDED, seconds=round(seconds, 2))
            if not failed and self.last_step.get(step.database) is step:  # None: the roles' steps
                record['status'] = SUCCEEDED
        self.save()
        return failed

    def roles_dumped(self, raw_file: str) -> None:
        with self.lock:
            self.roles['rawFile'] = raw_file

    def setting(self, name: str, status: str, **details) -> None:
        """A parameter change moved on (see SETTINGS_FILE); saved before anything else happens to it."""
        with self.lock:
            change = next(c for c in self.settings['changes'] if c['name'] == name)
            change.update(details, status=status)
            write_settings(self.plan.workdir, self.settings)

    def settings_to_give_back(self) -> list:
        with self.lock:
            return [dict(c) for c in (self.settings or {}).get('changes', []) if c['status'] in TO_GIVE_BACK]

    def interrupted(self, running_ids: list, signal_name: str) -> None:
        """Stopped by a signal: every database under way says so, and the steps it was in."""
        with self.lock:
            by_id = {s.id: s for s in self.plan.steps}
            running = [by_id[i] for i in running_ids if i in by_id]
            for step_id in running_ids:
                self.tasks.setdefault(step_id, {})['status'] = INTERRUPTED
            for record in [self.roles, *self.dbs.values()]:
                if record['status'] == RUNNING:
                    record['status'] = INTERRUPTED
            self.status = INTERRUPTED
            self.stop = {'signal': signal_name, 'steps': [s.id for s in running],
                         'step': {'name': running[0].name, 'database': running[0].database} if running else None}

    def stopped_by(self, reason: str, running_ids: list) -> None:
        """Stopped on purpose (an online run's slot over --max-slot-wal): failed, with the reason, where it was."""
        with self.lock:
            self.error = reason
            for step_id in running_ids:
                self.tasks.setdefault(step_id, {})['status'] = FAILED
            for record in [self.roles, *self.dbs.values()]:
                if record['status'] in (RUNNING, PENDING) or 'online' in record:
                    record.update(status=FAILED, error=record.get('error') or reason)
            self.status = FAILED

    def online(self, database: str, **fields) -> None:
        """What became of the objects a database's online run made (see pg/online.py)."""
        with self.lock:
            self.dbs[database].setdefault('online', {}).update(fields)

    def crashed(self, err: BaseException) -> None:
        """An exception nothing expected (a bug): the run failed, and says where."""
        with self.lock:
            self.error = f'{type(err).__name__}: {err}'
            for step_id, task in self.tasks.items():
                if task.get('status') == RUNNING:
                    task['status'] = FAILED
            for record in [self.roles, *self.dbs.values()]:
                if record['status'] in (RUNNING, PENDING):
                    record.update(status=FAILED, error=record.get('error') or self.error)
            self.status = FAILED

    def finish(self, extra: Optional[dict] = None) -> dict:
        """The result, as az prints it and as the manifest keeps it."""
        with self.lock:
            if self.status == RUNNING:
                unfinished = [r.get('name', 'roles') for r in [self.roles, *self.dbs.values()]
                              if r['status'] not in ENDED]
                if unfinished and not self._failed():  # never report as done what did not end (a bug)
                    self.error = f"the run ended with {', '.join(unfinished)} unfinished"
                self.status = FAILED if self._failed() or unfinished else SUCCEEDED
            result = self.result(extra)
        self.save(result)
        return result

    # ----- what it says --------------------------------------------------------------------------------

    def _failed(self) -> bool:
        return self.roles['status'] == FAILED or any(d['status'] == FAILED for d in self.dbs.values())

    def result(self, extra: Optional[dict] = None) -> dict:
        return result_of(self, extra)

    def save(self, result: Optional[dict] = None) -> None:
        """Written as it happens: after a kill -9 (no chance to write anything), --resume still knows which
        steps and tables were finished and which half-made databases on the target are ours to drop. A full
        disk must not turn a failed step into a traceback: the previous manifest stays (it says `running`,
        and a run whose process is gone is read as interrupted). A restore never rewrites what the dump
        wrote: it keeps its own result beside it."""
        with self.lock:
            self.saved_at = time.monotonic()
            try:
                if self.plan.mode == 'restore':
                    if result is not None:
                        private_file(self.plan.workdir / 'restore-result.json', json.dumps(result, indent=2))
                    return
                write_manifest(self.plan.workdir, manifest_of(self, result))
            except OSError as err:
                self.progress(f'Could not update the state in {self.plan.workdir}: {err.strerror or err}. '
                              '--resume still continues this run.')


def result_of(state: RunState, extra: Optional[dict] = None) -> dict:
    """The result az prints, as the state has it now."""
    plan, resumed = state.plan, state.plan.resumed
    carried = [dict(d, resumed='finished by an earlier run; not migrated again') for d in resumed.done] \
        if resumed else []
    out = {'status': state.status, 'mode': plan.mode}
    if resumed:
        out['resumed'] = {
            'finishedBefore': [d['name'] for d in resumed.done], 'migratedNow': resumed.todo,
            'note': 'The databases migrated now read the source in a new snapshot, not the one of the earlier '
                    'run: run `az postgres dumprestore verify` (or run --verify) if the source was written to '
                    'meanwhile.'}
    if state.stop:
        out['interrupted'] = state.stop
    if state.error:
        out['error'] = state.error
    out.update({'workDir': str(plan.workdir), 'method': plan.opts.method, 'jobs': plan.opts.jobs,
                'utilities': {'version': plan.tools.version, 'bindir': str(plan.tools.bindir)},
                'sourceMajor': plan.source_major, 'targetMajor': plan.target_major,
                'roles': state.roles, 'databases': carried + list(state.dbs.values()),
                **({'targetSettings': state.settings} if state.settings else {}),
                'durationSeconds': round(time.monotonic() - state.started, 2), **(extra or {})})
    return copy.deepcopy(out)


def manifest_of(state: RunState, result: Optional[dict] = None) -> dict:
    """What the work dir keeps: the plan's databases (for `restore`), every step's state, the result."""
    plan = state.plan
    fmt = 'plain' if plan.opts.method == 'plain' else 'directory'
    data = {'format': FORMAT, 'tool': 'azext_pgdump', 'status': state.status, 'mode': plan.mode,
            'method': plan.opts.method, 'utilitiesMajor': plan.tools.major, 'updatedAt': time.time(),
            **({'online': True} if plan.opts.online else {}),   # a resumed run follows the source too
            'source': None if plan.source is None else {'server': plan.source.name, 'major': plan.source_major},
            'databases': (plan.resumed.done_entries if plan.resumed else []) + [
                {'database': asdict(d), 'format': fmt,
                 'dump': make.files_for(plan.workdir, d.name, plan.opts.method).dump.name,
                 **({'properties': plan.properties[d.name].as_dict()} if d.name in (plan.properties or {})
                    else {})}
                for d in plan.databases],
            'tasks': copy.deepcopy(state.tasks), 'result': result or result_of(state)}
    if state.status == RUNNING:
        data['pid'] = os.getpid()
    if state.stop:  # where it stopped, at the top for people reading the file
        data.update(interruptedSteps=state.stop['steps'], interruptedStep=state.stop['step'])
    return data


def write_manifest(path: Path, manifest: dict) -> None:
    private_file(path / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))


def read_manifest(path: Path) -> dict:
    """The manifest as its run left it; `running` with a dead process is `interrupted` (a kill -9)."""
    try:
        data = json.loads((path / MANIFEST).read_text())
    except FileNotFoundError as err:
        raise WorkDirError(f'{path} holds no {MANIFEST}: it was not written by `dump` or `run`.') from err
    except ValueError as err:
        raise WorkDirError(f'{path / MANIFEST} is damaged: {err}.') from err
    if data.get('status') == RUNNING and not alive(data.get('pid')):
        data['status'] = INTERRUPTED
        data.setdefault('result', {})['status'] = INTERRUPTED
        data['killed'] = True   # no chance to say where: --resume reads the steps' states
    return data


def mark_interrupted(path: Path) -> tuple:
    """For `cleanup`: a manifest left `running` by a killed run is rewritten as what it is.
    Returns (the manifest, whether it was rewritten)."""
    data = read_manifest(path)
    if not data.pop('killed', False):
        return data, False
    for task in data.get('tasks', {}).values():
        if task.get('status') == RUNNING:
            task['status'] = INTERRUPTED
    for record in [data['result'].get('roles', {}), *data['result'].get('databases', [])]:
        if record.get('status') == RUNNING:
            record['status'] = INTERRUPTED
    data.pop('pid', None)
    write_manifest(path, data)
    return data, True


def write_settings(path: Path, record: dict) -> None:
    private_file(path / SETTINGS_FILE, json.dumps(record, indent=2, sort_keys=True))


def read_settings(path: Path):
    """The parameter changes a run in `path` recorded; None when it made none."""
    try:
        return json.loads((path / SETTINGS_FILE).read_text())
    except FileNotFoundError:
        return None
    except ValueError as err:
        raise WorkDirError(f'{path / SETTINGS_FILE} is damaged: {err}.') from err


def alive(pid) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def online_status(path: Path, database: str, status: str, **details) -> None:
    """After `run --online`: a database's target stopped following its source (`cut over`, `cancelled`). The
    manifest says so, so that a second cutover or cancel skips it."""
    _update_online(path, database, lambda online: online.update(details, status=status))


def online_write_block(path: Path, database: str, block: dict) -> None:
    """`cutover --block-writes`: the write privileges taken from the application's roles on the source and where
    they stand (`revoking`: written before the first REVOKE, so that a kill in between still knows what to give
    back; `revoked`; `given back`; `kept`: the cutover succeeded, the application writes to the target now)."""
    _update_online(path, database, lambda online: online.update(writeBlock=block))


def _update_online(path: Path, database: str, change) -> None:
    """The one change other commands make to a finished run's manifest: a database's `online` record."""
    data = read_manifest(path)
    for record in data.get('result', {}).get('databases', []):
        if record.get('name') == database and 'online' in record:
            change(record['online'])
    write_manifest(path, data)
