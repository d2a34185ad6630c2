"""Plan and execute a migration (`run`), or its halves (`dump`, `restore`), between two Endpoints."""
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Optional

import psycopg

from azext_pgdump.pg import (catalog, dbprops, dumpclean, errorlog, locales, plan as planner, roles, stream, tools,
                             workdir)
from azext_pgdump.pg import verify as verification
from azext_pgdump.pg.catalog import Database
from azext_pgdump.pg.endpoint import Endpoint
from azext_pgdump.pg.plan import Options, Step
from azext_pgdump.pg.runner import Runner, human, size_of

MANIFEST_FORMAT = 1
# pg_dump --statistics and the functions that restore them (pg_restore_relation_stats) came with 18.
STATISTICS_SINCE = 18


class MigrationError(Exception):
    def __init__(self, message: str, recommendation: str = ''):
        super().__init__(message)
        self.recommendation = recommendation


@dataclass
class Plan:
    mode: str                          # 'run', 'dump' or 'restore'
    steps: list
    tools: tools.Toolset
    workdir: Path
    opts: Options
    databases: list                    # catalog.Database
    source: Optional[Endpoint] = None
    target: Optional[Endpoint] = None
    source_major: Optional[int] = None
    target_major: Optional[int] = None
    tools_major_needed: int = 0
    notes: dict = None                 # database -> what the result says of it (owner, locale mapping, ...)
    properties: dict = None            # database -> dbprops.DatabaseProps, kept in the manifest for `restore`
    resumed: Optional['Resume'] = None  # run --resume: what an earlier run finished

    def as_dict(self) -> dict:
        """The plan for --dry-run and show-commands: argv and the names of secret variables, no secret."""
        def side(ep, major):
            return None if ep is None else {'server': ep.name, 'kind': ep.kind, 'user': ep.user, 'major': major}
        return {'mode': self.mode, 'workDir': str(self.workdir), 'method': self.opts.method, 'jobs': self.opts.jobs,
                'utilities': {'version': self.tools.version, 'bindir': str(self.tools.bindir)},
                'source': side(self.source, self.source_major), 'target': side(self.target, self.target_major),
                'databases': [d.name for d in self.databases], 'notes': self.notes or {},
                'steps': [dict(s.as_dict(), secretEnv=['PGPASSWORD']) if s.needs_password else s.as_dict()
                          for s in self.steps]}


def select_databases(available: list, names: Optional[list]) -> list:
    if not names:
        return available
    by_name = {d.name: d for d in available}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise MigrationError(f"The source has no database named {', '.join(repr(m) for m in missing)} that the "
                             'login can connect to.',
                             'List them with `az postgres dumprestore list-databases`.')
    return [by_name[n] for n in names]


def _for_utilities(endpoint: Endpoint, toolset: tools.Toolset) -> Endpoint:
    """Connection strings the chosen utilities' libpq understands."""
    return replace(endpoint, client_major=toolset.major)


def _choose_tools(needed: int, pg_bin_dir: Optional[str]) -> tools.Toolset:
    try:
        return tools.choose(tools.discover(pg_bin_dir), needed, pg_bin_dir)
    except tools.ToolsError as err:
        raise MigrationError(str(err), f'Install PostgreSQL {needed} client programs (for example '
                                       f'`apt-get install postgresql-client-{needed}`) or point --pg-bin-dir '
                                       'at a folder that holds them.') from err


EXISTS_FIX = ('Pass --if-exists reuse to restore into it, or --if-exists drop to drop and re-create it (this '
              'deletes its data).')


def clashes(names, existing: set, ours=frozenset()) -> list:
    """Databases to migrate that the target has already (never `postgres`, which every server has, nor one an
    interrupted run of ours created)."""
    return [n for n in names if n in existing and n not in planner.ALWAYS_PRESENT and n not in ours]


def clash_message(clash: list) -> str:
    return f"The target already has {', '.join(repr(c) for c in clash)}."


def _check_existing(dbs: list, existing: set, opts: Options) -> None:
    clash = clashes([d.name for d in dbs], existing, opts.ours_to_drop)
    if clash and opts.if_exists == 'fail':
        raise MigrationError(clash_message(clash), EXISTS_FIX)


def _source_facts(source: Endpoint, names):
    with catalog.connect(source) as conn:
        dbs = select_databases(catalog.user_databases(conn), names)
        return catalog.server_major(conn), dbs, not catalog.can_read_pg_authid(conn), \
            {d.name: dbprops.read(conn, d.name) for d in dbs}


@dataclass(frozen=True)
class TargetFacts:
    """What creating databases on the target needs to know of it."""
    major: int
    existing: frozenset      # database names
    roles: frozenset
    locales: frozenset       # the locales it can create databases with


def _target_facts(target: Endpoint) -> TargetFacts:
    with catalog.connect(target) as conn:
        return TargetFacts(catalog.server_major(conn), frozenset(catalog.database_names(conn)),
                           frozenset(catalog.role_names(conn)), frozenset(catalog.locales(conn)))


@dataclass(frozen=True)
class Facts:
    """What planning a run needs to know of both servers; read once, by the checks or by the plan."""
    source_major: int
    databases: list          # catalog.Database, the ones to migrate
    no_role_passwords: bool  # the source login cannot read pg_authid (Azure)
    properties: dict         # database -> dbprops.DatabaseProps (grants, settings, comment)
    target: TargetFacts


def inspect(source: Endpoint, target: Endpoint, names=None) -> Facts:
    return Facts(*_source_facts(source, names), _target_facts(target))


def _as_created(db: Database, target: TargetFacts, opts: Options, login: str, roles_coming: bool) -> tuple:
    """The database as the target creates it (locale mapped), the role to own it (None: the login),
    and what the result says of both."""
    notes, mapped = {}, {}
    creating = planner.will_create(db.name, db.name in target.existing, opts)
    for loc in sorted({db.collate, db.ctype} - {''} if creating else ()):  # a reused database keeps its own
        new = locales.target_locale(loc, target.locales, opts.locale_map)
        if new is None:
            raise MigrationError(f"The target has no locale {loc!r} (database {db.name}) and none maps to it.",
                                 f"Pass --locale-map '{loc}=en_US.utf8' (or another locale the target has).")
        if new != loc:
            mapped[loc] = new
    if mapped:
        notes['localeMapped'] = mapped
        db = replace(db, collate=mapped.get(db.collate, db.collate), ctype=mapped.get(db.ctype, db.ctype))
    owner, why = db.owner, None
    if opts.no_owner:
        why = '--no-owner'
    elif not owner or roles.is_service_role(owner):
        why = f'on the source it belongs to the Azure service role {owner}'
    elif owner != login and not roles_coming and owner not in target.roles:
        why = f'the role {owner} does not exist on the target (--no-roles)'
    if why or owner == login:
        owner = None
    if why:
        notes['ownerNote'] = f'owned by {login}: {why}'
    notes['owner'] = owner or login
    return db, owner, notes


@dataclass
class Resume:
    """What an earlier run in the same work dir finished: those databases are not migrated again."""
    done: list          # the earlier results of the databases that succeeded
    done_entries: list  # their entries in the earlier manifest (dump file, format, ...)
    todo: list          # the names still to migrate
    created: frozenset  # databases that run created on the target (a partial copy: dropped and made again)
    roles_done: bool

    def options(self, opts: Options) -> Options:
        """The run's options for what is left: roles only if not done; our half-made databases dropped."""
        return replace(opts, roles=opts.roles and not self.roles_done, ours_to_drop=self.created)


def resume_state(wd: Path) -> Resume:
    manifest = workdir.read_manifest(wd)
    if manifest.get('format') != MANIFEST_FORMAT or manifest.get('mode') != 'run':
        raise MigrationError(f'{wd} holds no run this version can resume.', 'Start a new run with another --work-dir.')
    pid = manifest.get('pid')
    if manifest.get('status') == 'running' and pid and _alive(pid):
        raise MigrationError(f'Another run (process {pid}) is using {wd}.', 'Wait for it, or stop it first.')
    previous = {d['name']: d for d in manifest.get('result', {}).get('databases', [])}
    names = [d['database']['name'] for d in manifest['databases']]
    done = [previous[n] for n in names if previous.get(n, {}).get('status') == 'succeeded']
    created = frozenset(n for n in names if 'create' in previous.get(n, {}).get('durations', {}))
    roles = manifest.get('result', {}).get('roles', {}).get('status')
    finished = {d['name'] for d in done}
    return Resume(done, [e for e in manifest['databases'] if e['database']['name'] in finished],
                  [n for n in names if n not in finished], created - finished, roles in ('succeeded', 'skipped'))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _work_dir(work_dir, reuse, create: bool, dbs=(), method='plain') -> Path:
    """Created (and guarded) for execution; only named for show-commands, which must not touch the disk."""
    if not create:
        return Path(work_dir or 'pgdump')
    wd = workdir.prepare(work_dir or workdir.default_path(), reuse)
    if method == 'directory':  # pg_dump -Fd refuses a folder that exists; never delete a user's dump for it
        dumps = (planner.files_for(wd, d.name, method).dump for d in dbs)
        old = [dump.name for dump in dumps if dump.exists()]
        if old:
            raise MigrationError(f"{wd} already holds {', '.join(old)} from an earlier dump.",
                                 'Remove them, or choose another --work-dir.')
    return wd


def ensure_distinct(source: Endpoint, target: Endpoint) -> None:
    if (source.host.lower(), source.port) == (target.host.lower(), target.port):
        raise MigrationError(f'The source and the target are the same server ({source.name}).',
                             'Name two different servers: a migration into its own source would drop or duplicate '
                             'its data.')


def plan_run(source: Endpoint, target: Endpoint, opts: Options, names=None, work_dir: Optional[Path] = None,
             reuse_work_dir=False, pg_bin_dir=None, create=True, facts: Optional[Facts] = None,
             resume: Optional[Resume] = None) -> Plan:
    ensure_distinct(source, target)
    if resume is not None:
        names, reuse_work_dir, opts = resume.todo, True, resume.options(opts)
        if create and opts.method == 'directory':  # the interrupted run's own partial dumps, in its work dir
            for name in resume.todo:
                shutil.rmtree(planner.files_for(Path(work_dir), name, 'directory').dump, ignore_errors=True)
    facts = facts or inspect(source, target, names or None)
    smajor, dbs, no_passwords = facts.source_major, facts.databases, facts.no_role_passwords
    if resume is not None:  # nothing left to do is not "every database"
        dbs = [d for d in dbs if d.name in resume.todo]
    tmajor, existing_dbs = facts.target.major, facts.target.existing
    toolset = _choose_tools(max(smajor, tmajor), pg_bin_dir)
    source, target = _for_utilities(source, toolset), _for_utilities(target, toolset)
    opts = replace(opts, statistics=toolset.major >= STATISTICS_SINCE and tmajor >= STATISTICS_SINCE)
    _check_existing(dbs, existing_dbs, opts)
    login = _login(target)
    created = {d.name: _as_created(d, facts.target, opts, login, opts.roles) for d in dbs}
    wd = _work_dir(work_dir, reuse_work_dir, create, dbs, opts.method)
    steps = planner.roles_steps(toolset, source, target, wd, no_passwords) if opts.roles else []
    notes = {}
    for db in dbs:
        files = planner.files_for(wd, db.name, opts.method)
        as_created, owner, notes[db.name] = created[db.name]
        create_steps = planner.create_steps(toolset, target, as_created, db.name in existing_dbs, opts, owner)
        if opts.method == 'plain':
            steps += create_steps + planner.streamed_steps(toolset, source, target, db, wd, opts)
        elif opts.method == 'stream':
            before, after = planner.stream_steps(toolset, source, target, db, wd, opts)
            steps += before + create_steps + after
        else:
            steps += planner.dump_steps(toolset, source, db, wd, opts) + create_steps
            steps += planner.restore_steps(toolset, target, db.name, files.dump, files, opts, plain=False)
        steps += _properties(toolset, target, db.name, facts.properties.get(db.name), files, opts,
                             notes[db.name], created=bool(create_steps))
    return Plan('run', steps, toolset, wd, opts, dbs, source, target, smajor, tmajor,
                tools_major_needed=max(smajor, tmajor), notes=notes, properties=facts.properties, resumed=resume)


def _login(target: Endpoint) -> str:
    return target.user.rsplit('@', 1)[0] if target.kind == 'single' else target.user


def _properties(toolset, target, database, props, files, opts, notes, created: bool) -> list:
    if not created:  # the service's own postgres, or --if-exists reuse: its owner and properties stay
        notes.clear()
        notes['reused'] = 'existing database restored into; its owner, grants, settings and comment are unchanged'
        return []
    if props is None:
        return []
    statements, left_out = dbprops.statements(props, database, acl=not opts.no_acl)
    if left_out:
        notes['leftOut'] = [{'object': x, 'reason': dumpclean.LEFT_OUT_REASON} for x in left_out]
    return planner.properties_step(toolset, target, database, statements, files)


def plan_dump(source: Endpoint, opts: Options, names=None, work_dir=None, reuse_work_dir=False,
              pg_bin_dir=None, create=True) -> Plan:
    smajor, dbs, no_passwords, props = _source_facts(source, names)
    toolset = _choose_tools(smajor, pg_bin_dir)
    source = _for_utilities(source, toolset)
    wd = _work_dir(work_dir, reuse_work_dir, create, dbs, opts.method)
    steps = planner.roles_steps(toolset, source, source, wd, no_passwords)[:1] if opts.roles else []
    for db in dbs:
        steps += planner.dump_steps(toolset, source, db, wd, opts)
    return Plan('dump', steps, toolset, wd, opts, dbs, source=source, source_major=smajor, tools_major_needed=smajor,
                properties=props)


def _input_format(path: Path) -> str:
    if path.is_dir():
        if not (path / 'toc.dat').exists():
            raise MigrationError(f'{path} is a directory but not a pg_dump directory archive (no toc.dat).')
        return 'directory'
    with path.open('rb') as f:
        return 'custom' if f.read(5) == b'PGDMP' else 'plain'


def plan_restore(target: Endpoint, opts: Options, work_dir: Optional[Path] = None, dump_file: Optional[Path] = None,
                 target_database: Optional[str] = None, names=None, pg_bin_dir=None) -> Plan:
    tgt = _target_facts(target)
    tmajor, existing_dbs, props = tgt.major, tgt.existing, {}
    if dump_file:
        if not target_database:
            raise MigrationError('--target-database is required with --dump-file.',
                                 'Name the database to create on the target, for example --target-database appdb.')
        if not dump_file.exists():
            raise MigrationError(f'{dump_file} does not exist.', 'Pass the .sql file, the custom-format archive or '
                                                                 'the directory pg_dump wrote.')
        fmt = _input_format(dump_file)
        dbs, inputs, needed = [Database(target_database, 'UTF8', '', '')], {target_database: (dump_file, fmt)}, tmajor
        # The errors log goes beside the dump unless --work-dir says otherwise; that folder is not ours to chmod.
        wd = workdir.prepare(work_dir, True) if work_dir else dump_file.resolve().parent
        if not os.access(wd, os.W_OK):
            raise MigrationError(f'{wd} is not writable: the errors log goes there.',
                                 'Pass --work-dir with a folder you can write to.')
        has_roles, method = False, 'plain' if fmt == 'plain' else 'directory'
    else:
        wd = Path(work_dir).resolve()
        manifest = workdir.read_manifest(wd)
        if manifest.get('format') != MANIFEST_FORMAT or manifest.get('mode') not in ('dump', 'run'):
            raise MigrationError(f'{wd} holds a migration.json this version cannot read.',
                                 'Dump again with this version of the extension.')
        if manifest.get('method') == 'stream':
            raise MigrationError(f'{wd} is the work dir of a stream run: it copied tables server to server and kept '
                                 'no data files to restore from.',
                                 'Dump with `az postgres dumprestore dump` (or run --method directory) to get files.')
        unfinished = [d['name'] for d in manifest.get('result', {}).get('databases', []) if d['status'] != 'succeeded']
        if manifest.get('status') != 'succeeded' or unfinished:
            raise MigrationError(f"The dump in {wd} did not finish{': ' + ', '.join(unfinished) if unfinished else ''}"
                                 '; restoring it would give a partial copy.',
                                 'Run `az postgres dumprestore dump` again.')
        dbs = select_databases([Database(**d['database']) for d in manifest['databases']], names)
        inputs = {d['database']['name']: (wd / d['dump'], d['format']) for d in manifest['databases']}
        props = {d['database']['name']: dbprops.DatabaseProps(**d['properties'])
                 for d in manifest['databases'] if d.get('properties')}
        needed = max(tmajor, manifest['utilitiesMajor'])
        has_roles, method = (wd / 'roles.raw.sql').exists(), manifest['method']
    opts = replace(opts, method=method)
    toolset = _choose_tools(needed, pg_bin_dir)
    target = _for_utilities(target, toolset)
    # A run onto an 18 target dumped statistics; restored elsewhere, a server before 18 has no function for them.
    opts = replace(opts, no_statistics=toolset.major >= STATISTICS_SINCE > tmajor)
    _check_existing(dbs, existing_dbs, opts)
    steps = planner.roles_steps(toolset, target, target, wd, True)[1:] if opts.roles and has_roles else []
    login, notes = _login(target), {}
    for db in dbs:
        dump, fmt = inputs[db.name]
        files = planner.files_for(wd, db.name, method)
        as_created, owner, notes[db.name] = _as_created(db, tgt, opts, login, opts.roles and has_roles)
        create_steps = planner.create_steps(toolset, target, as_created, db.name in existing_dbs, opts, owner)
        steps += create_steps
        steps += planner.restore_steps(toolset, target, db.name, dump, files, opts, plain=fmt == 'plain')
        steps += _properties(toolset, target, db.name, props.get(db.name), files, opts, notes[db.name],
                             created=bool(create_steps))
    return Plan('restore', steps, toolset, wd, opts, dbs, target=target, target_major=tmajor,
                tools_major_needed=needed, notes=notes)


# ----- execution ------------------------------------------------------------------------------------

def _manifest(plan: Plan, status: str) -> dict:
    fmt = 'plain' if plan.opts.method == 'plain' else 'directory'
    return {'format': MANIFEST_FORMAT, 'tool': 'azext_pgdump', 'status': status, 'mode': plan.mode,
            'method': plan.opts.method, 'utilitiesMajor': plan.tools.major, 'updatedAt': time.time(),
            'source': None if plan.source is None else {'server': plan.source.name, 'major': plan.source_major},
            'databases': (plan.resumed.done_entries if plan.resumed else []) + [
                {'database': asdict(d), 'format': fmt,
                 'dump': planner.files_for(plan.workdir, d.name, plan.opts.method).dump.name,
                 **({'properties': plan.properties[d.name].as_dict()} if d.name in (plan.properties or {}) else {})}
                for d in plan.databases]}


def clean_roles_file(raw: Path, output: Path, existing_roles: Path, login: str) -> dict:
    """What the roles-clean step does, in `run` and in `az postgres dumprestore clean-roles`."""
    existing = {line.strip() for line in existing_roles.read_text(encoding='utf-8-sig').splitlines()} - {''} \
        if existing_roles else set()
    cleaned = roles.clean(raw.read_text(encoding='utf-8'), existing, login)
    # Role definitions can carry password hashes: the file is private from its first byte.
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, 'w', encoding='utf-8') as f:
        f.write(cleaned.sql)
    return {'created': cleaned.created, 'skippedExisting': cleaned.skipped_existing,
            'skippedService': cleaned.skipped_service, 'needPassword': cleaned.need_password,
            'droppedStatements': cleaned.dropped, 'file': str(output)}


def _clean_roles(step: Step) -> dict:
    args = dict(a[2:].split('=', 1) for a in step.argv if a.startswith('--'))
    return clean_roles_file(Path(args['input']), Path(args['output-file']), Path(args['existing-roles']),
                            args['target-login'])


def _mask(text: str, secrets: list) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, '********')
    return text


def clean_dump_file(source: Path, output: Optional[Path], schemas: Optional[Path]) -> list:
    """What the restore-clean step does, in `run` and in `az postgres dumprestore clean-dump`: a
    pg_restore list is split in two passes (schemas first), a plain script streamed through the filter.
    Returns what was left out."""
    head = source.read_bytes()[:4096] if str(source) != '-' else b''
    if head.startswith(b';') or b'\n; Selected TOC Entries' in head:
        cleaned = dumpclean.clean_list(source.read_text(encoding='utf-8'))
        for path, text in ((output, cleaned.rest), (schemas, cleaned.schemas)):
            if path is not None:
                _write_private(path, text.encode())
        return cleaned.left_out
    cleaner = dumpclean.PlainFilter()
    with (sys.stdin.buffer if str(source) == '-' else source.open('rb')) as src, \
            _open_output(output) as out:
        while chunk := src.read(1 << 20):
            out.write(cleaner.feed(chunk))
        out.write(cleaner.close())
    return cleaner.left_out


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, 'wb') as f:
        f.write(data)


def _open_output(path: Optional[Path]):
    if path is None or str(path) == '-':
        return os.fdopen(os.dup(sys.stdout.fileno()), 'wb')
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 'wb')


def _clean_dump(step: Step) -> list:
    args = dict(a[2:].split('=', 1) for a in step.argv if a.startswith('--'))
    optional = {k: Path(args[k]) if k in args else None for k in ('output-file', 'schemas-file')}
    return clean_dump_file(Path(args['input']), optional['output-file'], optional['schemas-file'])


class _Report:
    def __init__(self, plan: Plan):
        self.plan = plan
        self.roles = {'status': 'skipped'} if not plan.opts.roles else {'status': 'pending'}
        self.dbs = {d.name: {'name': d.name, 'status': 'pending', 'method': plan.opts.method, 'durations': {},
                             **(plan.notes or {}).get(d.name, {})}
                    for d in plan.databases}
        self.last_step = {s.database: s for s in plan.steps if s.database}
        self.exits = {}   # database -> exit codes of the restore's passes so far

    def failed(self) -> bool:
        return self.roles['status'] == 'failed' or any(d['status'] == 'failed' for d in self.dbs.values())

    def as_dict(self, started: float) -> dict:
        resumed = self.plan.resumed
        carried = [dict(d, resumed='finished by an earlier run; not migrated again') for d in resumed.done] \
            if resumed else []
        extra = {'resumed': {
            'finishedBefore': [d['name'] for d in resumed.done], 'migratedNow': resumed.todo,
            'note': 'The databases migrated now read the source in a new snapshot, not the one of the earlier run: '
                    'run `az postgres dumprestore verify` (or run --verify) if the source was written to meanwhile.'}} \
            if resumed else {}
        return {'status': 'failed' if self.failed() else 'succeeded', 'mode': self.plan.mode, **extra,
                'workDir': str(self.plan.workdir), 'method': self.plan.opts.method, 'jobs': self.plan.opts.jobs,
                'utilities': {'version': self.plan.tools.version, 'bindir': str(self.plan.tools.bindir)},
                'sourceMajor': self.plan.source_major, 'targetMajor': self.plan.target_major,
                'roles': self.roles, 'databases': carried + list(self.dbs.values()),
                'durationSeconds': round(time.monotonic() - started, 2)}


class _Snapshots:
    """With verification: one open source transaction per database. pg_dump reads its snapshot (--snapshot)
    and verify counts the source in it, so writes during the migration cannot raise false alarms."""

    def __init__(self, plan: Plan, enabled: bool):
        self.plan, self.open, self.tables = plan, {}, {}
        self.enabled = enabled and plan.source is not None   # --verify
        # The stream method reads everything in one snapshot, verified or not.
        self.exporting = self.enabled or (plan.opts.method == 'stream' and plan.source is not None)

    def snapshot(self, database: str) -> Optional[str]:
        return self.open.get(database, (None, None))[1]

    def step_for(self, step: Step) -> Step:
        if not self.exporting or step.name not in ('dump', 'transfer', 'dump-schema'):
            return step
        conn = catalog.connect(self.plan.source, step.database)  # ConnectError: the step fails
        try:
            conn.execute('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
            snapshot = conn.execute('SELECT pg_export_snapshot()').fetchone()[0]
            self.open[step.database] = (conn, snapshot)
            argv = step.argv + [f'--snapshot={snapshot}']
            if step.name == 'dump-schema':
                argv = self._without_table_data(step.database, conn, argv)
        except psycopg.Error as err:  # a lock held past --timeout, a lost server: the step fails
            self.release(step.database)
            conn.close()
            raise catalog.ConnectError(f'Could not read {step.database} in one snapshot: {str(err).strip()}') \
                from err
        return replace(step, argv=argv)

    def _without_table_data(self, database, conn, argv) -> list:
        """The stream method copies the tables' data itself: pg_dump leaves out exactly those (not the
        materialized views, whose REFRESH it must keep), as read in the snapshot."""
        conn.execute("SELECT pg_catalog.set_config('search_path', '', false)")
        tables = stream.read_tables(conn, self.plan.source_major)
        opts = self.plan.opts
        self.tables[database] = stream.split(conn, tables, opts.split_bytes, opts.jobs, self.plan.source_major)
        excludes = [f'--exclude-table-data={stream.pattern(t)}' for t in tables]
        return [a for a in argv if a != stream.ALL_TABLE_DATA] + excludes

    def verify(self, database: str) -> dict:
        _, snapshot = self.open.get(database, (None, None))
        jobs = self.plan.opts.jobs
        try:
            source = verification.inventory(self.plan.source, database, jobs=jobs, snapshot=snapshot)
            target = verification.inventory(self.plan.target, database, jobs=jobs)
            return verification.compare(database, source, target, live_source=True)
        except (psycopg.Error, catalog.ConnectError) as err:
            return {'name': database, 'status': 'failed', 'differences': [f'verification failed: {err}'],
                    'notes': [], 'tables': []}
        finally:
            self.release(database)

    def release(self, database: str) -> None:
        conn, _ = self.open.pop(database, (None, None))
        if conn is not None:
            conn.close()

    def close(self) -> None:
        for database in list(self.open):
            self.release(database)


def execute(plan: Plan, progress: Callable[[str], None], interval: float = 10.0, verify: bool = False) -> dict:
    secret_values = [p for p in (ep.current_password() for ep in (plan.source, plan.target) if ep) if p]
    runner = Runner({'source': plan.source, 'target': plan.target}, progress, interval)
    report, started = _Report(plan), time.monotonic()
    snapshots = _Snapshots(plan, verify)
    if plan.mode != 'restore':  # a restore reads the manifest; it never rewrites what the dump wrote
        workdir.write_manifest(plan.workdir, dict(_manifest(plan, 'running'), pid=os.getpid()))
    step = None
    try:
        for step in plan.steps:
            _execute_step(plan, step, report, runner, snapshots, progress, secret_values)
            if plan.mode != 'restore' and _milestone(step, report):
                # Written as it happens: after a kill -9 (no chance to write anything), --resume still knows
                # which databases were finished and which half-made ones on the target are ours to drop.
                _save_manifest(plan, dict(_manifest(plan, 'running'), pid=os.getpid(),
                                          result=report.as_dict(started)), progress)
    except (KeyboardInterrupt, SystemExit):
        # Ctrl-C, SIGTERM or SIGHUP: the children are stopped already (runner); say where it stopped.
        if plan.mode != 'restore':
            _save_manifest(plan, dict(_manifest(plan, 'interrupted'), result=report.as_dict(started),
                                      interruptedStep=step and {'name': step.name, 'database': step.database}),
                           progress)
        raise
    finally:
        snapshots.close()
    out = report.as_dict(started)
    if verify:
        checked = [d['verify'] for d in out['databases'] if 'verify' in d]
        out['verify'] = {'status': 'failed' if any(c['status'] == 'failed' for c in checked) else 'passed',
                         'databases': checked}
    if plan.mode == 'restore':
        try:
            _write_private(plan.workdir / 'restore-result.json', summary_json(out).encode())
        except OSError as err:
            progress(f'Could not write restore-result.json: {err.strerror or err}')
    else:
        _save_manifest(plan, dict(_manifest(plan, out['status']), result=out), progress)
    return out


def _milestone(step: Step, report: '_Report') -> bool:
    """A target database created, the roles restored, or a database finished."""
    return step.name in ('create', 'roles-restore') or report.last_step.get(step.database) is step


def _save_manifest(plan: Plan, manifest: dict, progress) -> None:
    """A full disk must not turn a failed step into a traceback: the previous manifest stays (it says
    "running", and a run whose process is gone is resumed as interrupted)."""
    try:
        workdir.write_manifest(plan.workdir, manifest)
    except OSError as err:
        progress(f'Could not update {workdir.MANIFEST} in {plan.workdir}: {err.strerror or err}. '
                 '--resume still continues this run.')


def _execute_step(plan, step, report, runner, snapshots, progress, secret_values):
    # pylint: disable=too-many-arguments
    db = report.dbs.get(step.database) if step.database else None
    if db is not None and db['status'] == 'failed':
        return
    if step.name.startswith('roles-') and report.roles['status'] == 'failed':
        return  # nothing to clean or restore after a failed roles dump
    progress(f'{step.description}...')
    if step.name == 'copy':
        _copy(plan, step, db, snapshots, progress)
    elif step.in_process:
        _in_process(step, report.roles if db is None else db)
    else:
        _run_process(plan, step, db, report, runner, snapshots, progress, secret_values)
    if db is not None and db['status'] != 'failed' and report.last_step.get(step.database) is step:
        _finish_database(plan, db, step, snapshots, progress)


def _in_process(step: Step, record: dict) -> None:
    try:
        if step.name == 'roles-clean':
            record.update(_clean_roles(step))
        else:
            record['leftOut'] = record.get('leftOut', []) + [
                {'object': x, 'reason': dumpclean.LEFT_OUT_REASON} for x in _clean_dump(step)]
    except (OSError, ValueError) as err:
        record.update(status='failed', failedStep=step.name, error=str(err))


def _copy(plan, step, db, snapshots, progress):
    """The stream method's data: every table, in the snapshot the schema was dumped in."""
    started = time.monotonic()
    try:
        result = stream.copy_tables(plan.source, plan.target, step.database, snapshots.snapshot(step.database),
                                    snapshots.tables.pop(step.database), plan.opts.jobs, progress,
                                    psql=plan.tools.path('psql'))
    except (psycopg.Error, catalog.ConnectError) as err:
        result = stream.CopyResult(failed={'table': None, 'error': str(err).strip()})
    db['durations']['copy'] = round(time.monotonic() - started, 2)
    db.update(copy=result.as_dict(), dumpBytes=sum(t['bytes'] for t in result.tables))
    if result.failed:
        db.update(status='failed', failedStep='copy',
                  error=f"{result.failed['table'] or 'connecting'}: {result.failed['error']}")
        snapshots.release(step.database)
        return
    if not snapshots.enabled:  # nothing reads the snapshot any more: do not hold the source's horizon back
        snapshots.release(step.database)
    # The final pass skips what the workers built already.
    kept = [line for line in Path(step.input).read_text(encoding='utf-8').splitlines()
            if not _built(line, result.early_oids)]
    _write_private(Path(step.output), ''.join(f'{line}\n' for line in kept).encode())


def _built(line: str, oids: set) -> bool:
    entry = dumpclean.parse_list_line(line)
    return entry is not None and entry.desc in ('INDEX', 'CONSTRAINT') and entry.oid in oids


def _finish_database(plan, db, step, snapshots, progress):
    db['status'] = 'succeeded'
    if snapshots.enabled and plan.mode != 'dump':
        progress(f'Verifying {step.database} against the source...')
        db['verify'] = snapshots.verify(step.database)
        if db['verify']['status'] == 'failed':
            db.update(status='failed', failedStep='verify', error='; '.join(db['verify']['differences'][:3]))


def _run_process(plan, step, db, report, runner, snapshots, progress, secret_values):
    # pylint: disable=too-many-arguments
    try:
        result = runner.run(snapshots.step_for(step))
    except (OSError, catalog.ConnectError) as err:  # a full disk, a file that cannot be written, a lost source
        record = report.roles if db is None else db
        message = str(err) if isinstance(err, catalog.ConnectError) else \
            f'{err.strerror or err}: {err.filename or ""}'.rstrip(': ')
        record.update(status='failed', failedStep=step.name, error=message)
        progress(f'  FAILED: {record["error"]}')
        if db is not None:
            snapshots.release(step.database)
        return
    progress(f'  {"done" if result.returncode == 0 else "FAILED"} in {result.seconds:.1f}s'
             + (f', {human(result.bytes_written)} written' if step.output else ''))
    error = _mask(result.stderr_tail.strip(), secret_values)
    if db is None:
        _record_roles_step(report.roles, step, result, error)
        return
    exits = report.exits.setdefault(step.database, [])
    _record_db_step(db, step, result, error, _mask(result.pipe.stderr_tail.strip(), secret_values)
                    if result.pipe else '', exits)
    if db['status'] == 'failed':
        snapshots.release(step.database)


def _record_db_step(db: dict, step: Step, result, error: str, pipe_error: str, exits: list) -> None:
    # pylint: disable=too-many-arguments
    db['durations'][step.name] = round(result.seconds, 2)
    if step.name in ('dump', 'transfer', 'dump-schema'):
        db.update(dumpBytes=result.bytes_written, dumpPath=step.output)
    if step.name == 'transfer':
        if result.left_out:
            db['leftOut'] = db.get('leftOut', []) + [{'object': x, 'reason': dumpclean.LEFT_OUT_REASON}
                                                     for x in result.left_out]
        _record_log(db, step.pipe, max(result.pipe.returncode, 0), pipe_error, 'restore')
        if result.returncode != 0 and db['status'] != 'failed':
            db.update(status='failed', failedStep='dump', error=error)
    elif step.name in ('restore-schemas', 'restore-pre'):
        exits.append(result.returncode)  # judged with the last pass, whose log it shares
    elif step.name == 'restore':
        db.setdefault('dumpPath', step.input)
        db.setdefault('dumpBytes', size_of(step.input))
        _record_log(db, step, max([result.returncode, *exits]), error, 'restore')
    elif step.name == 'properties':
        _record_log(db, step, result.returncode, error, 'properties', key='propertiesErrors')
    elif result.returncode != 0:
        db.update(status='failed', failedStep=step.name, error=error)
    if step.name in ('dump', 'transfer', 'dump-schema') and db['status'] == 'failed' and 'failedLog' not in db:
        db['failedLog'] = step.stderr


def _record_roles_step(roles_report: dict, step: Step, result, error: str) -> None:
    if step.name == 'roles-restore':
        log = errorlog.read(Path(step.stderr))
        roles_report.update(errors=log.as_dict(), errorsLog=step.stderr)
        failed = log.failed(result.returncode)
        roles_report['status'] = 'failed' if failed else 'succeeded'
        if failed:
            roles_report['error'] = log.first_problem() or error
    elif result.returncode != 0:
        roles_report.update(status='failed', failedStep=step.name, error=error)
    elif step.name == 'roles-dump' and roles_report['status'] == 'pending':
        roles_report.update(status='dumped', rawFile=step.output)


def _record_log(db: dict, step: Step, exit_code: int, error: str, name: str, key: str = 'errors') -> None:
    """Judge a restore's errors log (see errorlog): real errors, or a non-zero exit nothing harmless
    explains, fail the database."""
    log = errorlog.read(Path(step.stderr))
    db.update({key: log.as_dict(), f'{key}Log': step.stderr})
    if log.failed(exit_code):
        db.update(status='failed', failedStep=name, error=log.first_problem() or error, failedLog=step.stderr)


def summary_json(result: dict) -> str:
    return json.dumps(result, indent=2)
