"""How an online run ends, on its work dir: `cutover` (the target has applied everything the source committed,
takes the sequences' values, stops following; then every table is compared by checksum; with --block-writes the
application's roles lose their write privileges on the source first, see write_block.py) or `cancel` (it stops
following; the source is left as it was before the run, privileges a killed --block-writes cutover took given
back)."""
import time

import psycopg

from azext_pgdump.pg import catalog, online, slot_wal, write_block
from azext_pgdump.pg.process import human
from azext_pgdump.pg import state as run_state
from azext_pgdump.pg.interrupts import shielded
from azext_pgdump.pg.verify import verify as verify_databases


CUTTING_OVER = 'cutting over'   # a cutover under way, or killed: another cutover or a cancel may take it on


def following(work_dir, statuses=('following',)) -> list:
    """(database, what its online run made) for each database whose online status is one of `statuses`."""
    manifest = run_state.read_manifest(work_dir)
    if manifest.get('status') == run_state.RUNNING:   # its state would overwrite ours, and its copy is under way
        raise run_state.WorkDirError(f"The run in {work_dir} is still going (process {manifest.get('pid')}): wait "
                                     'for it to end (the databases that follow are said as it goes).')
    return [(d['name'], d['online']) for d in manifest.get('result', {}).get('databases', [])
            if d.get('online', {}).get('status') in statuses]


def cutover(source, target, work_dir, databases: list, timeout: float, jobs: int, say,
            block_writes: bool = False) -> dict:
    out, blocks = [], {}
    for name, made in databases:
        blocks[name] = write_block.pending(made)   # taken by a cutover that was killed: given back or kept below
        try:
            out.append(_cut_over(source, target, work_dir, name, made, timeout, block_writes, blocks, say))
        except BaseException:   # stopped (a signal): the application must not stay blocked
            _end_block(source, work_dir, {'name': name, 'status': 'failed'}, blocks[name], say)
            raise
        if out[-1].get('status') == 'failed':   # at once: the application writes again while the rest goes on
            _end_block(source, work_dir, out[-1], blocks[name], say)
    cut = [e['name'] for e in out if 'error' not in e]
    say(f"Comparing every table of {', '.join(cut)} by checksum..." if cut else 'Nothing was cut over.')
    checked = verify_databases(source, target, cut, True, jobs) if cut else {'status': 'passed', 'databases': []}
    verdicts = {d['name']: d for d in checked['databases']}
    for entry in out:
        if entry['name'] in verdicts:
            entry['verify'] = verdicts[entry['name']]
            entry['status'] = verdicts[entry['name']]['status']
            _end_block(source, work_dir, entry, blocks[entry['name']], say)
        if 'leftovers' in entry:   # cut over (the block stays): the objects left make it fail all the same
            entry.update(status='failed', error=entry['leftovers'])
    failed = any(e['status'] == 'failed' for e in out)
    return {'status': 'failed' if failed else 'succeeded', 'mode': 'cutover', 'workDir': str(work_dir),
            'databases': out}


def _cut_over(source, target, work_dir, name, made, timeout, block_writes, blocks, say) -> dict:
    """One database: refused while the schemas differ; else (writes blocked first, when asked) caught up,
    sequences set, what the run made removed. `blocks[name]`: the grants taken, as soon as they are."""
    say(f'Cutting {name} over: waiting for the target to apply the source\'s last changes...')
    entry = {'name': name}
    run_state.online_status(work_dir, name, CUTTING_OVER)   # a run waiting for the cutover leaves it alone now
    try:
        changed = online.schema_changes(source, target, name)
        if changed:   # refused before anything is removed: the target still follows
            say(f'  {name}: REFUSED: the schema changed since the copy')
            run_state.online_status(work_dir, name, 'following')
            return dict(entry, status='failed', error='the schema changed on one side since the copy '
                        '(logical replication does not carry DDL): ' + '; '.join(changed[:10]) +
                        '. Make the same change on the other side, then cut over again.')
        if block_writes:
            entry['writeBlock'] = _block(source, work_dir, name, made, blocks, say)
        entry['caughtUpSeconds'] = online.caught_up(source, target, name, timeout, say)
        entry['sequences'] = online.sequences(source, target, name)
    except (TimeoutError, psycopg.Error, catalog.ConnectError) as err:
        say(f'  {name}: FAILED: {err}')
        run_state.online_status(work_dir, name, 'following')
        return dict(entry, status='failed', error=str(err).strip())
    # From here the target holds everything and its sequences: cut over, whatever the removal below meets.
    with shielded():
        run_state.online_status(work_dir, name, 'cut over')
        entry['removed'] = _removed(source, target, name, made, entry, say)
    if made.get('identityFull'):   # both sides keep it: the target's schema came from the source with it
        entry['replicaIdentityFull'] = [table for table, _ in made['identityFull']]
        say(f"  {name}: {', '.join(entry['replicaIdentityFull'])} keep REPLICA IDENTITY FULL (give them a "
            'primary key, or ALTER TABLE ... REPLICA IDENTITY DEFAULT)')
    say(f"  {name}: caught up in {entry['caughtUpSeconds']} s, {entry['sequences']} sequences set, "
        f"removed {', '.join(entry['removed']) or 'nothing'}")
    return entry


def _removed(source, target, name, made, entry, say) -> list:
    """What the run made, removed after the cutover; what could not be is `leftovers` (the command then fails,
    but the database stays cut over: the writes stay blocked, nothing is undone)."""
    try:
        return online.teardown(source, target, name, made, cut_over=True)
    except (psycopg.Error, catalog.ConnectError) as err:
        entry['leftovers'] = (f'cut over, but what the online run made could not all be removed: {str(err).strip()}.'
                              ' Remove it with `az postgres dumprestore cleanup --online-leftovers '
                              '--include-following` and both servers')
        say(f"  {name}: {entry['leftovers']}")
        return []


def _block(source, work_dir, name, made, blocks, say) -> dict:
    say(f'  {name}: taking the application roles\' write privileges on the source...')
    blocks[name] = write_block.record(source, work_dir, name, made)   # in the manifest before any REVOKE
    taken = write_block.take(source, work_dir, name, made, blocks[name])
    still = ', '.join(f"{s['role']} ({s['why']})" for s in taken['stillMayWrite']) or 'nobody'
    say(f"  {name}: {len(taken['revoked'])} write privileges taken; still may write: {still}")
    return taken


def _end_block(source, work_dir, entry: dict, grants: list, say) -> None:
    """A database that failed gives the application its privileges back; one cut over keeps them taken (the
    application writes to the target now) and says how to give them back by hand."""
    if not grants:
        return
    name, block = entry['name'], entry.setdefault('writeBlock', {'revoked': grants})
    if block.get('status'):
        return   # ended already
    try:
        if entry['status'] == 'failed':
            block['notGivenBack'] = write_block.give_back(source, work_dir, name, grants)
            block['status'] = 'given back'
            say(f'  {name}: the write privileges are given back on the source')
            return
        write_block.keep(work_dir, name, grants)
        block.setdefault('giveBack', write_block.statements(source, name, grants))
        block['status'] = 'kept'
        say(f'  {name}: the write privileges stay taken on the source; to give them back: '
            + ' '.join(block['giveBack']))
    except (psycopg.Error, catalog.ConnectError) as err:
        block.update(status='give-back failed', error=str(err).strip())
        say(f'  {name}: could not give the write privileges back ({err}); grant them again by hand: '
            + ' '.join(block.get('giveBack', [])))


def cancel(source, target, work_dir, databases: list, say) -> dict:
    out = []
    for name, made in databases:
        entry = {'name': name}
        try:
            given = write_block.pending(made)   # a `--block-writes` cutover that was killed took them
            if given:
                entry['writeBlock'] = {'givenBack': given,
                                       'notGivenBack': write_block.give_back(source, work_dir, name, given)}
                say(f'  {name}: gave back {len(given)} write privileges a killed `cutover --block-writes` took')
            with shielded():   # once removing has begun, the manifest must say so
                removed = online.teardown(source, target, name, made)
                run_state.online_status(work_dir, name, 'cancelled')
        except (psycopg.Error, catalog.ConnectError) as err:
            out.append(dict(entry, status='failed', error=str(err).strip()))
            continue
        say(f"  {name}: removed {', '.join(removed) or 'nothing'}; the target keeps what was copied")
        out.append(dict(entry, status='cancelled', removed=removed))
    return {'status': 'failed' if any(e['status'] == 'failed' for e in out) else 'succeeded', 'mode': 'cancel',
            'workDir': str(work_dir), 'databases': out}


def wait(source, target, work_dir, limit, interval: float, say) -> dict:
    """run --online --wait-for-cutover: the lag of each database that follows, every `interval` seconds, until
    `cutover` or `cancel` (another az, on the same work dir) has ended every one. A slot over `limit` stops its
    database following (removed, as cancel does). A Ctrl-C only stops the waiting: the target still follows."""
    started, said, stopped_waiting = time.monotonic(), 0.0, None
    try:
        while True:
            databases = following(work_dir, ('following', CUTTING_OVER))
            if not databases:
                break
            if time.monotonic() - said >= min(interval, slot_wal.CHECK_EVERY):
                loud = time.monotonic() - said >= interval
                for name, made in databases:
                    if made.get('status') == 'following':   # not while a cutover works on it
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
        with shielded():   # a Ctrl-C now would leave the manifest saying it follows
            removed = online.teardown(source, target, name, made)
            run_state.online_status(work_dir, name, 'stopped', error=reason, removed=removed)
    except (psycopg.Error, catalog.ConnectError) as err:
        say(f'  {name}: could not remove them ({str(err).strip()}): run `az postgres dumprestore cancel` with '
            f'--work-dir {work_dir}')
