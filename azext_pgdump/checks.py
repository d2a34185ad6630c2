"""The checks of `check`, also run by `run` before it starts. Wiring between arm/ and pg/preflight."""
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from azure.cli.core.azclierror import AzureConnectionError, RequiredArgumentMissingError, ValidationError
from azure.core.exceptions import HttpResponseError
from knack.log import get_logger

from azext_pgdump.arm import parameters
from azext_pgdump.pg import assessment, catalog, majors, online, planner, preflight, tools
from azext_pgdump.reach import reach_side

logger = get_logger(__name__)


def reach_for_check(cmd, stack, kw, side, checks):
    """reach(), but a refusal becomes a failed check instead of an error: check changes nothing."""
    try:
        endpoint, server = reach_side(cmd, stack, kw, side)
    except (AzureConnectionError, RequiredArgumentMissingError) as err:
        fix = err.recommendations[0] if getattr(err, 'recommendations', None) else None
        if 'no pg_hba.conf entry' in str(err):
            fix = 'Run with --firewall-rule auto (the default of run): it opens a temporary rule for this address.'
        checks.append(preflight.Check(f'{side}-connection', 'fail', str(err), fix))
        return None, None
    checks.append(preflight.Check(f'{side}-connection', 'pass', f'Connected to {endpoint.name} as {endpoint.user}.'))
    return endpoint, server


def preflight_or_fail(cmd, progress, source, target, target_server, databases, opts, work_dir, pg_bin_dir,
                      installed=(), allow_extensions=None, online_from=False):
    """`check` before `run` touches anything: a failed check stops it with every fix at once. Returns the
    facts the checks read, for the plan. `installed`: the folders of the utilities install-utilities put."""
    try:
        planner.ensure_distinct(source, target)
    except planner.MigrationError as err:
        raise ValidationError(str(err), recommendation=err.recommendation) from err
    progress('Checking the servers and this machine before starting (--skip-check skips this)...')
    checks = []
    work = Path(work_dir) if work_dir else Path.cwd()
    facts = checks_with_both(cmd, source, target, target_server, databases, opts, work, pg_bin_dir, checks,
                             installed, allow_extensions)
    if online_from is not False:   # run --online: the source's ArmServer (or None), for the wal_level command
        checks += online_checks(source, online_from, target, databases, opts.replica_identity_full)
    for c in checks:
        if c.status == 'warn':
            logger.warning('%s: %s %s', c.name, c.message, c.fix or '')
    failed = [c for c in checks if c.status == 'fail']
    if failed:
        raise ValidationError('The migration would fail: ' + ' '.join(f'[{c.name}] {c.message}' for c in failed),
                              recommendation=' '.join(c.fix for c in failed if c.fix) or None)
    return facts


def checks_with_both(cmd, source, target, target_server, names, opts, work, pg_bin_dir, checks, installed=(),
                     allow_extensions=None):
    """Append every check that needs both servers; return the planner.Facts read (None if unknown).
    `allow_extensions` ('apply' or 'dry', run --allow-extensions): extensions the allow-list lacks are added."""
    # pylint: disable=too-many-arguments
    flexible = target_server is not None and target_server.kind == 'flexible'
    # The target's parameters are ARM round trips: asked for at once, while the servers are read.
    with ThreadPoolExecutor(4) as pool:
        asked = {name: pool.submit(parameters.get_parameter, cmd.cli_ctx, target_server, name)
                 for name in ('azure.extensions', 'shared_preload_libraries') if flexible}
        service = pool.submit(_service_checks, cmd.cli_ctx, target_server) if flexible else None
        allow = None if not (allow_extensions and flexible) else \
            lambda value, added: _allow(cmd.cli_ctx, target_server, value, added, allow_extensions == 'dry')
        facts = _checks_with_both(source, target, target_server, names, opts, work, (pg_bin_dir, installed), checks,
                                  asked, allow_more=allow)
        if service is not None:
            checks += service.result()
        return facts


def _service_checks(cli_ctx, server) -> list:
    """High availability and read replicas: both replay every write of the load; Microsoft advises turning
    high availability off for it and creating replicas after it. Reported, never changed by this tool."""
    g, n = server.resource_group, server.name
    mode, replicas = server.high_availability, parameters.read_replicas(cli_ctx, server)
    ha = preflight.Check(
        'target-high-availability', 'warn', f'High availability ({mode}) is on for {n}: the standby makes every '
        'write of the load too, which slows it.', f'Turn it off for the load: `az postgres flexible-server update -g '
        f'{g} -n {n} --high-availability Disabled`, and on again after it (--high-availability {mode}).') \
        if mode.lower() != 'disabled' else preflight.Check('target-high-availability', 'pass',
                                                           f'High availability is off for {n}.')
    rr = preflight.Check(
        'target-read-replicas', 'warn', f"{n} has read replicas ({', '.join(replicas)}): each replays the whole "
        'load.', 'Microsoft advises creating read replicas after the load: delete them now (`az postgres '
        f'flexible-server delete -g {g} -n REPLICA`) and create them after it (`az postgres flexible-server replica '
        f'create -g {g} --replica-name REPLICA --source-server {n}`), or accept a slower load.') \
        if replicas else preflight.Check('target-read-replicas', 'pass', f'{n} has no read replicas.')
    return [ha, rr]


def _allow(cli_ctx, server, value: str, added: list, dry: bool) -> bool:
    """run --allow-extensions: add `added` to the target's azure.extensions (dynamic: no restart)."""
    if dry:
        logger.warning('--allow-extensions would add %s to the azure.extensions of %s.', ', '.join(added),
                       server.name)
        return True
    logger.warning('Adding %s to the azure.extensions of %s (--allow-extensions)...', ', '.join(added), server.name)
    try:
        parameters.set_parameter(cli_ctx, server, 'azure.extensions', value)
    except HttpResponseError as err:
        logger.error('Could not change azure.extensions of %s: %s', server.name, err.message)
        return False
    return True


def _checks_with_both(source, target, target_server, names, opts, work, utilities, checks, asked, allow_more=None):
    # pylint: disable=too-many-arguments,too-many-locals
    jobs, no_roles, if_exists = opts.jobs, not opts.roles, opts.if_exists
    try:
        facts = planner.inspect(source, target, names)
    except planner.MigrationError as err:
        checks.append(preflight.Check('databases', 'fail', str(err), err.recommendation))
        return None
    smajor, dbs, tmajor, existing = facts.source_major, facts.databases, facts.target.major, facts.target.existing
    findings = assessment.read(source, [d.name for d in dbs], smajor)
    with catalog.connect(source) as src:
        checks.append(preflight.connections(src, 'source', jobs))
    checks.append(assessment.readable(findings, source.user.rsplit('@', 1)[0] if source.kind == 'single'
                                      else source.user))
    checks += assessment.blockers(findings)
    checks.append(assessment.collations(findings, facts.target.locales, facts.target.icu, tmajor))
    checks.append(assessment.generated_children(findings, tmajor))
    checks += assessment.gone_in_target(findings, tmajor)
    with catalog.connect(target) as tgt:
        pg_bin_dir, installed = utilities
        checks.append(preflight.utilities(tools.discover(pg_bin_dir, installed=installed), smajor, tmajor,
                                          pg_bin_dir))
        checks += preflight.target_privileges(tgt, not no_roles)
        allow = preload = None
        if asked:
            allow_value = asked['azure.extensions'].result()
            allow = None if allow_value is None else {x.strip() for x in allow_value.split(',') if x.strip()}
            preload = asked['shared_preload_libraries'].result()
        fix_allow = parameters.set_command(target_server, 'azure.extensions') if target_server else ''
        fix_preload = (parameters.set_command(target_server, 'shared_preload_libraries') +
                       f' && az postgres flexible-server restart -g {target_server.resource_group} '
                       f'-n {target_server.name}') if target_server else ''
        used = {k: v for f in findings for k, v in f.extensions.items()}
        blocked = sorted(set(used) - allow) if allow is not None else []
        if blocked and allow_more is not None and allow_more(','.join(sorted(allow | set(used))), blocked):
            allow = allow | set(used)
        checks += preflight.extensions(used, tgt, allow, preload, fix_allow, fix_preload)
        checks += [majors.removed_extensions(findings, tmajor), majors.role_grants(source, tgt, tmajor, not no_roles),
                   majors.system_columns(findings, tgt, tmajor)]
        checks.append(preflight.existing_databases([d.name for d in dbs], existing, if_exists, opts.ours_to_drop))
        # Only databases run will create need the source's locale on the target.
        created = [d for d in dbs if d.name not in existing or (if_exists == 'drop' and d.name != 'postgres')]
        checks.append(preflight.collations(created, facts.target.locales, opts.locale_map))
        checks.append(preflight.connections(tgt, 'target', jobs))
    checks.append(assessment.search_path_safety(findings, tmajor))
    checks.append(preflight.disk_space(source, [d.name for d in dbs], work))
    checks.append(preflight.lock_headroom(findings))
    return facts


def online_checks(source, source_server, target, names, identity_full=False) -> list:
    """check --online: what logical replication from this source to this target needs."""
    if source_server is not None and source_server.kind == 'flexible':
        g, n = source_server.resource_group, source_server.name
        fix = (f'az postgres flexible-server parameter set -g {g} -s {n} --name wal_level --value logical && '
               f'az postgres flexible-server restart -g {g} -n {n}   (a restart: plan it)')
    else:
        fix = 'ALTER SYSTEM SET wal_level = logical; as a superuser, then restart the server (plan it).'
    with catalog.connect(source) as conn:
        names = names or [d.name for d in catalog.user_databases(conn)]
    kind = source_server.kind if source_server is not None else source.kind
    return online.source_checks(source, kind, names, fix, identity_full) + [online.target_check(target, target.kind)]
