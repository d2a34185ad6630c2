"""--tune-target: wiring between arm/tuning.py (the parameters through ARM), pg/settings.py (which to change) and
the run (pg/run.py sets them before the first step and gives them back at every exit). Also the give-back of
what a killed run left set, for `--resume`, a new run in the same work dir, and `cleanup --work-dir`."""
from pathlib import Path

from azure.cli.core.azclierror import ValidationError
from knack.log import get_logger

from azext_pgdump.arm import tuning as arm_tuning
from azext_pgdump.pg import catalog, settings
from azext_pgdump.pg import state as run_state

logger = get_logger(__name__)


def require_flexible(server) -> None:
    if server is None or server.kind != 'flexible':
        raise ValidationError('--tune-target changes the parameters of a Flexible Server through Azure Resource '
                              'Manager; this target is not one ARM knows.',
                              recommendation='Name the target with --target-server (and its resource group), or '
                                             'leave out --tune-target.')


def for_run(cmd, server, plan) -> tuple:
    """(Tuning, Applier) for a run: the load is the size of the source's databases."""
    with catalog.connect(plan.source) as conn:
        incoming = catalog.databases_bytes(conn, [d.name for d in plan.databases])
    return _planned(cmd, server, plan, incoming)


def for_restore(cmd, server, plan, inputs) -> tuple:
    """(Tuning, Applier) for a restore: the load is at least the size of its dump files."""
    incoming = sum(_bytes(Path(p)) for p in inputs)
    return _planned(cmd, server, plan, incoming)


def _bytes(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob('*') if f.is_file())
    return path.stat().st_size if path.exists() else 0


def _planned(cmd, server, plan, incoming) -> tuple:
    tuning = arm_tuning.plan_for(cmd.cli_ctx, server, plan.target, incoming, plan.opts.jobs)
    for skipped in tuning.skipped:
        logger.warning('--tune-target leaves %s as it is: %s.', skipped['name'], skipped['reason'])
    return tuning, arm_tuning.Applier(cmd.cli_ctx, server)


def give_back_leftovers(cmd, server, work_dir: Path, say) -> list:
    """Put back what a run in `work_dir` set and could not give back itself (a kill -9, a lost machine).
    Returns what became of each parameter; the work dir's record says so afterwards."""
    record = run_state.read_settings(work_dir)
    changes = [c for c in (record or {}).get('changes', []) if c['status'] in run_state.TO_GIVE_BACK]
    if not changes:
        return []
    if server is None or (server.name.lower(), server.resource_group.lower()) != \
            (record['server'].lower(), record['resourceGroup'].lower()):
        logger.warning('The run in %s changed parameters of %s (resource group %s); they are not given back here. '
                       'Run `az postgres dumprestore cleanup -g %s -s %s --work-dir %s`.', work_dir, record['server'],
                       record['resourceGroup'], record['resourceGroup'], record['server'], work_dir)
        return []
    say(f'Putting back the parameters of {server.name} that the earlier run in {work_dir} set...')
    by_name = {c['name']: c for c in changes}   # the dicts inside `record`: updated in place, then saved

    def save(name, outcome):
        by_name[name].update(outcome)
        run_state.write_settings(work_dir, record)
    return settings.give_back_all(arm_tuning.Applier(cmd.cli_ctx, server), changes, save, say)
