"""How an online run ends, on its work dir: `cutover` (the target has applied everything the source committed,
takes the sequences' values, stops following; then every table is compared by checksum) or `cancel` (it stops
following; the source is left as it was before the run)."""
import time

import psycopg

from azext_pgdump.pg import catalog, online, slot_wal
from azext_pgdump.pg.process import human
from azext_pgdump.pg import state as run_state
from azext_pgdump.pg.verify import verify as verify_databases


def following(work_dir, statuses=('following',)) -> list:
    """(database, what its online run made) for each database whose online status is one of `statuses`."""
    manifest = run_state.read_manifest(work_dir)
    return [(d['name'], d['online']) for d in manifest.get('result', {}).get('databases', [])
            if d.get('online', {}).get('status') in statuses]


def cutover(source, target, work_dir, databases: list, timeout: float, jobs: int, say) -> dict:
    out = []
    for name, made in databases:
        say(f'Cutting {name} over: waiting for the target to apply the source\'s last changes...')
        entry = {'name': name}
        try:
            changed = online.schema_changes(source, target, name)
            if changed:   # refused before anything is removed: the target still follows
                out.append(dict(entry, status='failed', error='the schema changed on one side since the copy '
                                '(logical replication does not carry DDL): ' + '; '.join(changed[:10]) +
                                '. Make the same change on the other side, then cut over again.'))
                say(f'  {name}: REFUSED: the schema changed since the copy')
                continue
            entry['caughtUpSeconds'] = online.caught_up(source, target, name, timeout, say)
            entry['sequences'] = online.sequences(source, target, name)
            entry['removed'] = online.teardown(source, target, name, made)
        except (TimeoutError, psycopg.Error, catalog.ConnectError) as err:
            out.append(dict(entry, status='failed', error=str(err).strip()))
            say(f'  {name}: FAILED: {err}')
            continue
        run_state.online_status(work_dir, name, 'cut over')
        say(f"  {name}: caught up in {entry['caughtUpSeconds']} s, {entry['sequences']} sequences set, "
            f"removed {', '.join(entry['removed']) or 'nothing'}")
        out.append(entry)
    cut = [e['name'] for e in out if 'error' not in e]
    say(f"Comparing every table of {', '.join(cut)} by checksum..." if cut else 'Nothing was cut over.')
    checked = verify_databases(source, target, cut, True, jobs) if cut else {'status': 'passed', 'databases': []}
    verdicts = {d['name']: d for d in checked['databases']}
    for entry in out:
        if entry['name'] in verdicts:
            entry['verify'] = verdicts[entry['name']]
            entry['status'] = verdicts[entry['name']]['status']
    failed = any(e['status'] == 'failed' for e in out)
    return {'status': 'failed' if failed else 'succeeded', 'mode': 'cutover', 'workDir': str(work_dir),
            'databases': out}


def cancel(source, target, work_dir, databases: list, say) -> dict:
    out = []
    for name, made in databases:
        try:
            removed = online.teardown(source, target, name, made)
        except (psycopg.Error, catalog.ConnectError) as err:
            out.append({'name': name, 'status': 'failed', 'error': str(err).strip()})
            continue
        run_state.online_status(work_dir, name, 'cancelled')
        say(f"  {name}: removed {', '.join(removed) or 'nothing'}; the target keeps what was copied")
        out.append({'name': name, 'status': 'cancelled', 'removed': removed})
    return {'status': 'failed' if any(e['status'] == 'failed' for e in out) else 'succeeded', 'mode': 'cancel',
            'workDir': str(work_dir), 'databases': out}


def wait(source, target, work_dir, limit, interval: float, say) -> dict:
    """run --online --wait-for-cutover: the lag of each database that follows, every `interval` seconds, until
    `cutover` or `cancel` (another az, on the same work dir) has ended every one. A slot over `limit` stops its
    database following (removed, as cancel does). A Ctrl-C only stops the waiting: the target still follows."""
    started, said, stopped_waiting = time.monotonic(), 0.0, None
    try:
        while True:
            databases = following(work_dir)
            if not databases:
                break
            if time.monotonic() - said >= min(interval, slot_wal.CHECK_EVERY):
                loud = time.monotonic() - said >= interval
                for name, made in databases:
                    _watch(source, target, work_dir, (name, made), limit, say, loud)
                said = time.monotonic() if loud else said
            time.sleep(1)   # a cutover from another shell is seen within a second
    except (KeyboardInterrupt, SystemExit) as err:
        stopped_waiting = 'SIGINT' if isinstance(err, KeyboardInterrupt) else 'signal'
        say('Stopped waiting; the target still follows the source: run `az postgres dumprestore cutover` (or '
            f'`cancel`) with --work-dir {work_dir}.')
    return {'waitedSeconds': round(time.monotonic() - started, 1),
            **({'stoppedWaiting': stopped_waiting} if stopped_waiting else {})}


def _watch(source, target, work_dir, database: tuple, limit, say, loud: bool) -> None:
    """One look at a database that follows: its lag said (when `loud`), its slot's WAL against the limit."""
    name, made = database
    try:
        lag = online.lag(source, target, name, made['slot'])
    except (psycopg.Error, catalog.ConnectError) as err:   # a cutover under way removes the heartbeat, for one
        if loud:
            say(f'  {name}: could not read the lag: {str(err).strip()}')
        return
    reason = slot_wal.over({name: lag['retainedBytes']}, limit)
    if reason is None:
        if loud:
            say(f"  {name}: {lag['seconds']} s and {human(lag['bytes'])} behind, {human(lag['retainedBytes'])} of "
                'WAL kept on the source; stop the application\'s writes, then run `az postgres dumprestore cutover`')
        return
    say(f'Stopping {reason}; removing what the online run made to keep the source\'s disk clear.')
    try:
        removed = online.teardown(source, target, name, made)
    except (psycopg.Error, catalog.ConnectError) as err:
        say(f'  {name}: could not remove them ({str(err).strip()}): run `az postgres dumprestore cancel` with '
            f'--work-dir {work_dir}')
        return
    run_state.online_status(work_dir, name, 'stopped', error=reason, removed=removed)
