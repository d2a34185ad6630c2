"""How an online run ends, on its work dir: `cutover` (the target has applied everything the source committed,
takes the sequences' values, stops following; then every table is compared by checksum) or `cancel` (it stops
following; the source is left as it was before the run)."""
import psycopg

from azext_pgdump.pg import catalog, online
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
