"""Run a plan (`run`, `dump`, `restore`): the scheduler starts each step when it may; here a step's kind
chooses the code that does it (a program, a pipe, an in-process action, the stream copy), record.py says
what its end means, and the run's state (state.py) keeps it, in the manifest as it happens and in the result
at every exit: success, failure, a signal, an exception."""
import signal
import time
import traceback
from pathlib import Path
from typing import Callable

import psycopg

from azext_pgdump.pg import (catalog, children, dumpclean, errorlog, footprint, inprocess, interrupts, online, record,
                             settings, slot_wal, stream)
from azext_pgdump.pg.interrupts import shielded
from azext_pgdump.pg.process import Runner, human, size_of
from azext_pgdump.pg.scheduler import Scheduler
from azext_pgdump.pg.snapshots import Snapshots
from azext_pgdump.pg.state import FAILED, INTERRUPTED, SUCCEEDED, RunState
from azext_pgdump.pg.steps import Step


CONNECT_WAIT = 60.0   # seconds a new subscription has to connect to the source before the step fails


def execute(plan, progress: Callable[[str], None], interval: float = 10.0, verify: bool = False,
            applier=None) -> dict:
    """The result, as az prints it and the manifest keeps it; its status says how the run ended
    (`succeeded`, `failed`, or `interrupted` with the signal and the steps under way). `applier` sets and reads
    the target's parameters (arm/tuning.Applier) when the plan changes them for the load."""
    return _Run(plan, progress, interval, verify, applier).execute()


def _mask(text: str, secrets: list) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, '********')
    return text


def signal_name(err: BaseException) -> str:
    """KeyboardInterrupt is SIGINT; sigterm_as_exit raises SystemExit(128 + the signal's number)."""
    if isinstance(err, KeyboardInterrupt):
        return 'SIGINT'
    try:
        return signal.Signals(int(err.code) - 128).name
    except (TypeError, ValueError):
        return 'exit'


class _Run:
    """One execution of a plan. Steps run on the scheduler's threads; what they find goes to the state
    (which has its own lock), their work (the utilities, the copy) runs outside it."""

    def __init__(self, plan, progress: Callable[[str], None], interval: float, verify: bool, applier=None):
        self.plan, self.progress, self.verify, self.applier = plan, progress, verify, applier
        self.secrets = [p for p in (ep.current_password() for ep in (plan.source, plan.target) if ep) if p]
        self.runner = Runner({'source': plan.source, 'target': plan.target}, progress, interval)
        self.state = RunState(plan, progress)
        self.published = {}   # run --online: database -> what its publish step made
        self.alive = []       # online: connections that say on the source that this run lives (online.hold)
        self.snapshots = Snapshots(plan, verify, self.published)
        self.exits = {}   # database -> exit codes of the restore passes judged with a later one
        self.guard = slot_wal.Guard(plan.source, plan.opts.max_slot_wal)   # online: the WAL the slots keep

    def execute(self) -> dict:
        children.reset()
        self.state.begin()
        jobs = self.plan.opts.jobs
        scheduler = Scheduler(self.plan.steps, {'source': jobs, 'target': jobs}, self.step, done=self.plan.skip,
                              watch=lambda: self.guard.check({d: m['slot'] for d, m in dict(self.published).items()}))
        over_limit = None
        try:
            self._tune()   # in the try: a signal while ARM applies a change still gives back what was set
            scheduler.run()
        except slot_wal.SlotWalLimit as err:   # the children are stopped already (scheduler)
            over_limit = str(err)
            self.progress(f'Stopping: {over_limit}. The replication slots are removed to keep the source\'s disk '
                          'clear.')
            self.state.stopped_by(over_limit, scheduler.interrupted)
        except (KeyboardInterrupt, SystemExit) as err:
            # Ctrl-C, SIGTERM or SIGHUP: the children are stopped already (scheduler); say where it stopped.
            self.state.interrupted(scheduler.interrupted, signal_name(err))
        except Exception as err:  # pylint: disable=broad-except  # a bug: still a result, and the manifest says so
            self.progress(f'Unexpected error, please report it:\n{traceback.format_exc()}')
            self.state.crashed(err)
        finally:
            self.snapshots.close()
            self.guard.close()
            for conn in self.alive:   # what follows the source now is the target's subscription, not this run
                conn.close()
        with shielded():  # a signal now must not cost the target its parameters, or the result its last save
            if over_limit:
                self._stop_following(over_limit)
            else:
                self._drop_unfinished_slots()
            self._give_back()
            return self.state.finish(self._verified())

    def _drop_unfinished_slots(self) -> None:
        """A database that failed or was stopped before its copy was in: its slot would keep the source's WAL
        for nothing (a resume makes a new one, its snapshot is gone), so it goes now with its publication."""
        for database, made in dict(self.published).items():
            restored = self.state.tasks.get(f'{database}/restore', {}).get('status') == SUCCEEDED
            if self.state.dbs[database]['status'] in (FAILED, INTERRUPTED) and not restored:
                self._remove_online(database, lambda d=database, m=made: online.teardown_source(self.plan.source, d, m),
                                    'the copy did not end: --resume migrates it again from a new slot')

    def _stop_following(self, reason: str) -> None:
        """Over --max-slot-wal: what the online run made is removed (the target keeps what was copied)."""
        for database, made in dict(self.published).items():
            self._remove_online(database, lambda d=database, m=made: online.teardown(
                self.plan.source, self.plan.target, d, m), reason)

    def _remove_online(self, database: str, remove: Callable[[], list], reason: str) -> None:
        try:
            removed = remove()
        except (psycopg.Error, catalog.ConnectError) as err:
            self.progress(f'  {database}: could not remove what the online run made ({err}); run '
                          '`az postgres dumprestore cancel` with this --work-dir')
            return
        self.state.online(database, status='stopped', error=reason, removed=removed)
        self.progress(f"  {database}: removed {', '.join(removed) or 'nothing'} ({reason})")

    def _tune(self) -> None:
        """The target's parameters for the load, each recorded before it is asked for (see state.SETTINGS_FILE)."""
        tuning = self.plan.tuning
        if tuning is None or not tuning.changes or self.applier is None:
            return
        self.progress(f'Setting {len(tuning.changes)} parameters of {tuning.server} for the load (each is put back '
                      'when the run ends)...')
        for change in tuning.changes:
            self.state.setting(change.name, 'applying')
            try:
                self.applier.write(change.name, change.value)
            except settings.SettingError as err:
                self.state.setting(change.name, 'failed', error=str(err))
                self.progress(f'  {change.name}: not changed, the load runs without it: {err}')
                continue
            self.state.setting(change.name, 'applied')
            interrupts.raise_if_pending()   # a Ctrl-C swallowed inside the SDK's HTTP clean-up still stops the run
            self.progress(f'  {change.name}: {change.was} -> {change.value}' + (f' ({change.note})' if change.note
                                                                                 else ''))

    def _give_back(self) -> None:
        changes = self.state.settings_to_give_back()
        if not changes or self.applier is None:
            return
        self.progress(f'Putting back the parameters of {self.plan.tuning.server}...')
        settings.give_back_all(self.applier, changes, lambda name, outcome: self.state.setting(name, **outcome),
                               self.progress)

    def _verified(self) -> dict:
        if not self.verify:
            return {}
        checked = [d['verify'] for d in self.state.dbs.values() if 'verify' in d]
        return {'verify': {'status': 'failed' if any(c['status'] == 'failed' for c in checked) else 'passed',
                           'databases': checked}}

    def step(self, step: Step) -> None:
        """The scheduler's work for one step: do it, record what it found, end it."""
        if not self.state.step_started(step):
            return  # an earlier step of this database (or of the roles) failed: nothing more to do
        self.progress(f'{step.description}...')
        started = time.monotonic()
        {'copy': self._copy, 'action': self._action}.get(step.kind, self._program)(step)
        if step.database and self.state.last_step.get(step.database) is step:
            self._verify(step)
        if self.state.step_ended(step, time.monotonic() - started) and step.database:
            self.snapshots.release(step.database)

    def _action(self, step: Step) -> None:
        action = step.action
        try:
            if action.name == 'footprint':
                go = footprint.undo if action.option('undo') else footprint.take
                out = go(self.plan.target, step.database, Path(action.option('file')))
            elif action.name == 'list-tables':
                out = self.snapshots.list_tables(step.database, Path(action.option('output')))
            elif action.name in ('publish', 'subscribe'):
                out = self._online(action.name, step.database)
            else:
                out = inprocess.run_step(step)
        except (OSError, ValueError, psycopg.Error, catalog.ConnectError) as err:
            out = {'status': FAILED, 'failedStep': step.name, 'error': str(err).strip()}
        self.state.update(step, out)
        self.progress(f'  {step.id}: {record.line(step, out)}')

    def _online(self, name: str, database: str) -> dict:
        """run --online: publish before the snapshot, subscribe once the copy is in; the record names what was made
        (for cutover and cancel). The subscription's password lives only in the target's catalog."""
        plan = self.plan
        earlier = plan.resumed.published.get(database) if plan.resumed else None
        if name == 'publish':
            if earlier:   # resumed before its copy was in: that slot's snapshot is gone, so is what it was for
                online.teardown_source(plan.source, database, earlier)
            made = online.publish(plan.source, database, plan.source_major, plan.opts.replica_identity_full)
            self.published[database] = made   # first: whatever happens next, the run knows what to remove
            self.alive.append(online.hold(plan.source, database, made))
            return {'online': dict(made, status='publishing')}
        made = self.published.get(database)
        if made is None:   # resumed during the catch-up: the same slot, watched and removed like the others
            made = {k: v for k, v in earlier.items() if k not in ('status', 'lag')}
            self.published[database] = made
            self.alive.append(online.hold(plan.source, database, made))
        online.subscribe(plan.target, plan.source, database, made)
        online.connected(plan.source, database, made['slot'], CONNECT_WAIT)
        try:
            online.caught_up(plan.source, plan.target, database, 60, self.progress)
        except TimeoutError as err:   # still following: the lag below says how far behind
            self.progress(f'  {err}')
        lag = online.lag(plan.source, plan.target, database, made['slot'])
        reason = slot_wal.over({database: lag['retainedBytes']}, plan.opts.max_slot_wal)   # the copy's backlog
        if reason:
            raise slot_wal.SlotWalLimit(reason)
        self.progress(f'  {database}: the target follows the source, {lag["seconds"]} s and {lag["bytes"]} bytes '
                      'behind; run `az postgres dumprestore cutover` once the application\'s writes have stopped')
        return {'online': dict(made, status='following', lag=lag)}

    def _copy(self, step: Step) -> None:
        """The stream method's data: every table, in the snapshot the schema was dumped in. Resumed, the
        tables an earlier run finished are left as they are; the others are emptied and copied again."""
        plan, snapshots, started = self.plan, self.snapshots, time.monotonic()
        parts = stream.load_parts(step.action.option('tables'))   # what list-tables read in the snapshot
        resuming = step.database in plan.tables_done
        earlier = plan.tables_done.get(step.database, set())
        done_before = [p for p in parts if p.table.qualified in earlier]
        parts = [p for p in parts if p.table.qualified not in earlier]
        self.state.tables_resumed(step, earlier)
        try:
            if resuming:
                stream.reset(plan.target, step.database, {p.table.oid: p.table for p in parts}.values())
            result = stream.copy_tables(plan.source, plan.target, step.database, snapshots.snapshot(step.database),
                                        parts, plan.opts.jobs, self.progress, psql=plan.tools.path('psql'),
                                        on_table=lambda entry: self.state.table_copied(step, entry))
        except (psycopg.Error, catalog.ConnectError) as err:
            result = stream.CopyResult(failed={'table': None, 'error': str(err).strip()})
        if children.stopping():
            raise children.Stopped('interrupted')
        for part in done_before:
            result.early_oids.update(part.table.early_oids)
        out = {'copy': result.as_dict(), 'dumpBytes': sum(t['bytes'] for t in result.tables),
               'duration': round(time.monotonic() - started, 2)}
        if resuming:
            out['copy']['tablesResumed'] = len({p.table.oid for p in done_before})
        if result.failed:
            out.update(status=FAILED, failedStep='copy',
                       error=f"{result.failed['table'] or 'connecting'}: {result.failed['error']}")
        self.state.update(step, out)
        self.progress(f'  {step.id}: {record.line(step, out)} in {time.monotonic() - started:.1f}s')
        if result.failed:
            return
        if not snapshots.enabled:  # nothing reads the snapshot any more: do not hold the source's horizon back
            snapshots.release(step.database)
        # The final pass skips what the workers built already.
        kept = [line for line in Path(step.input).read_text(encoding='utf-8').splitlines()
                if not _built(line, result.early_oids)]
        inprocess.write_private(Path(step.output), ''.join(f'{line}\n' for line in kept).encode())

    def _verify(self, step: Step) -> None:
        """After a database's last step, with --verify: the target against the source in the run's snapshot."""
        if not self.snapshots.enabled or self.plan.mode == 'dump' or \
                self.state.record_of(step)['status'] == FAILED:
            return
        self.progress(f'Verifying {step.database} against the source...')
        checked = self.snapshots.verify(step.database)
        out = {'verify': checked}
        if checked['status'] == 'failed':
            out.update(status=FAILED, failedStep='verify', error='; '.join(checked['differences'][:3]))
        self.state.update(step, out)

    def _program(self, step: Step) -> None:
        try:
            result = self.runner.run(self.snapshots.step_for(step))
        except (OSError, catalog.ConnectError) as err:  # a full disk, a file that cannot be written, a lost source
            if children.stopping():
                raise children.Stopped('interrupted') from err
            message = str(err) if isinstance(err, catalog.ConnectError) else \
                f'{err.strerror or err}: {err.filename or ""}'.rstrip(': ')
            out = {'status': FAILED, 'failedStep': step.name, 'error': message}
            self.state.update(step, out)
            self.progress(f'  {step.id}: {record.line(step, out)}')
            return
        if children.stopping():  # stopped by us, not failed: the state says "interrupted"
            raise children.Stopped('interrupted')
        exits = self.exits.setdefault(step.database, [])
        # The passes before it that append to its errors log are judged with it.
        out = record.record(step, self._ended(step, result, tuple(exits) if step.stderr_append else ()))
        if step.judge == 'later':
            exits.append(result.returncode)
        self.state.update(step, out)
        self.progress(f'  {step.id}: {record.line(step, out)} in {result.seconds:.1f}s'
                      + (f', {human(result.bytes_written)} written' if step.output else ''))

    def _ended(self, step: Step, result, earlier: tuple) -> record.Ended:
        judged = step.pipe if step.kind == 'pipe' else step
        log = errorlog.read(Path(judged.stderr)) if judged.judge == 'log' and judged.stderr else None
        pipe = result.pipe
        return record.Ended(
            exit=result.returncode, seconds=result.seconds,
            written=size_of(step.input) if step.judge == 'log' else result.bytes_written,
            error=_mask(result.stderr_tail.strip(), self.secrets), log=log, earlier_exits=earlier,
            pipe_exit=pipe.returncode if pipe else 0,
            pipe_error=_mask(pipe.stderr_tail.strip(), self.secrets) if pipe else '',
            left_out=tuple({'object': x, 'reason': dumpclean.reason(x)} for x in result.left_out or ()),
            refreshed=tuple(result.refreshed or ()))


def _built(line: str, oids: set) -> bool:
    entry = dumpclean.parse_list_line(line)
    return entry is not None and entry.desc in ('INDEX', 'CONSTRAINT') and entry.oid in oids
