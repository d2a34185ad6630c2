"""run --online's wiring: which options go with it, the WAL limit of its slots (from the source's disk, read
through ARM), and waiting for the cutover after the run (--wait-for-cutover)."""
from azure.cli.core.azclierror import MutuallyExclusiveArgumentError
from knack.log import get_logger

from azext_pgdump import sizes
from azext_pgdump.pg import online_end, slot_wal
from azext_pgdump.pg import state as run_state
from azext_pgdump.pg.process import human

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
