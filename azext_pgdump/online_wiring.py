"""run --online's wiring: which options go with it, the WAL limit of its slots (from the source's disk, read
through ARM), waiting for the cutover after the run (--wait-for-cutover), and `cleanup --online-leftovers`."""
from contextlib import ExitStack

import psycopg
from azure.cli.core.azclierror import AzureConnectionError, MutuallyExclusiveArgumentError, ValidationError
from knack.log import get_logger

from azext_pgdump import sizes
from azext_pgdump.pg import catalog, online_end, slot_wal
from azext_pgdump.pg import online_leftovers as found_leftovers
from azext_pgdump.pg.interrupts import sigterm_as_exit
from azext_pgdump.pg import state as run_state
from azext_pgdump.pg.process import human
from azext_pgdump.reach import reach_side

logger = get_logger(__name__)


def allowed(method, verify) -> None:
    if method != 'stream':
        raise MutuallyExclusiveArgumentError('--online follows the source from the snapshot the stream method copies '
                                             'in.', recommendation='Leave out --method (stream is the default).')
    if verify:
        raise MutuallyExclusiveArgumentError('--online verifies at the cutover, when the source has stopped changing.',
                                             recommendation='Leave out --verify; `cutover` compares every table.')


def slot_wal_limit(given, source, source_server, say):
    """--max-slot-wal, else half of what a Flexible source's disk has left before it turns read-only."""
    if given is not None:
        return sizes.parse(given) or None   # 0: no limit
    storage = getattr(source_server, 'storage_bytes', None)
    limit = slot_wal.default_limit(storage, slot_wal.source_used_bytes(source)) if storage else None
    if limit is None:
        logger.warning('The source\'s disk size is not known (not a Flexible Server found through ARM): nothing '
                       'limits the WAL the replication slots keep there. Pass --max-slot-wal (for example 20GB).')
    else:
        say(f'The replication slots may keep up to {human(limit)} of WAL on the source (half of what its disk has '
            'left before it turns read-only); --max-slot-wal changes it.')
    return limit


def waiting_for_cutover(say, source, target):
    """run --online --wait-for-cutover: the lag until `cutover` or `cancel` ends every database's following."""
    def after(result, plan, interval):
        say('Waiting for the cutover (`az postgres dumprestore cutover` with the same --work-dir, from another '
            'shell); the lag every %d s. Ctrl-C stops waiting, not following.' % interval)
        waited = online_end.wait(source, target, plan.workdir, plan.opts.max_slot_wal, interval, say)
        ended = {d['name']: d for d in run_state.read_manifest(plan.workdir)['result']['databases']}
        for db in result['databases']:
            if 'online' in ended.get(db['name'], {}):
                db['online'] = ended[db['name']]['online']
        stopped = [d['name'] for d in result['databases'] if d.get('online', {}).get('status') == 'stopped']
        return dict(result, waitForCutover=waited, **({'status': 'failed'} if stopped else {}))
    return after


def leftovers(cmd, kw, say) -> tuple:
    """Find by name what online runs left on both servers; remove it (asked first unless --yes) but what a
    migration still uses, unless --include-following. Returns (the objects, whether a removal failed)."""
    with sigterm_as_exit(), ExitStack() as stack:
        source, _ = reach_side(cmd, stack, kw, 'source')
        target, _ = reach_side(cmd, stack, kw, 'target')
        try:
            items = found_leftovers.decide(found_leftovers.find(source, target), bool(kw['include_following']))
            doomed = [i for i in items if i['status'] == 'to remove']
            _say_kept(say, items)
            if kw['dry_run'] or not doomed:
                say(f"{len(doomed)} objects would be removed." if doomed else 'No online leftovers to remove.')
                return items, False
            from azure.cli.core.util import user_confirmation
            user_confirmation(f'Remove {len(doomed)} objects that online runs left: {_listing(doomed)}?',
                              yes=kw['yes'])
            found_leftovers.remove(source, target, items)
        except catalog.ConnectError as err:
            raise AzureConnectionError(str(err), recommendation='Check that the login may connect to every '
                                                                'database of both servers.') from err
        except psycopg.Error as err:
            raise ValidationError(f'Could not read what online runs left: {err}', recommendation='Use the '
                                  'administrator login of each server, the one `run --online` used.') from err
    return items, _report_removal(say, items)


def _report_removal(say, items) -> bool:
    """A removal that failed is logged with its error (and fails the command, after the list is printed)."""
    failed = [i for i in items if i['status'] == 'failed']
    say(f"Removed {sum(i['status'] == 'removed' for i in items)} objects.")
    for item in failed:
        logger.error('%s %s on %s could not be removed: %s', item['kind'], item['name'], item['server'],
                     item['error'])
    return bool(failed)


def _listing(items) -> str:
    return ', '.join(f"{i['kind']} {i['name']} ({i['side']}{', ' + i['database'] if i['database'] else ''})"
                     for i in items)


def _say_kept(say, items) -> None:
    kept = [i for i in items if i['status'] == 'kept']
    if kept:
        say(f'Kept, in use by a migration that is copying or following (end it with `cutover` or `cancel` and its '
            f'--work-dir; if the work dir is lost, --include-following removes it too): {_listing(kept)}')
