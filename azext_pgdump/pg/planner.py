"""Plan a migration (`run`), or its halves (`dump`, `restore`), between two Endpoints: the graph of steps
pg/run.py executes, and what `run --resume` leaves out of it."""
import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

from azext_pgdump.pg import catalog, dbprops, dumpclean, install, locales, roles, state as run_state, tools, workdir
from azext_pgdump.pg import steps as make
from azext_pgdump.pg.catalog import Database
from azext_pgdump.pg.endpoint import Endpoint
from azext_pgdump.pg.steps import Options

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
    skip: frozenset = frozenset()      # ids of steps an earlier run finished: not done again
    tables_done: dict = field(default_factory=dict)  # stream, resumed: database -> tables copied before
    tuning: Optional[object] = None    # settings.Tuning: the target's parameters set for the load, given back after

    def as_dict(self) -> dict:
        """The plan for --dry-run and show-commands: argv and the names of secret variables, no secret."""
        def side(ep, major):
            return None if ep is None else {'server': ep.name, 'kind': ep.kind, 'user': ep.user, 'major': major}
        return {'mode': self.mode, 'workDir': str(self.workdir), 'method': self.opts.method, 'jobs': self.opts.jobs,
                'utilities': {'version': self.tools.version, 'bindir': str(self.tools.bindir)},
                'source': side(self.source, self.source_major), 'target': side(self.target, self.target_major),
                'databases': [d.name for d in self.databases], 'notes': self.notes or {},
                **({'targetSettings': self.tuning.as_dict()} if self.tuning else {}),
                'steps': [self._step_dict(s) for s in self.steps]}

    def _step_dict(self, step) -> dict:
        out = dict(step.as_dict(), secretEnv=['PGPASSWORD']) if step.needs_password else step.as_dict()
        return dict(out, resumed='done by the earlier run') if step.id in self.skip else out


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


def _for_utilities(endpoint: Endpoint, toolset: tools.Toolset, major: int) -> Endpoint:
    """Connection strings the chosen utilities' libpq understands, and session settings the server knows."""
    return replace(endpoint, client_major=toolset.major, major=major)


def _choose_tools(needed: int, pg_bin_dir: Optional[str], closest_to: Optional[int] = None,
                  installed=()) -> tools.Toolset:
    """`installed`: the folders of the sets `install-utilities` put under az's configuration folder."""
    try:
        return tools.choose(tools.discover(pg_bin_dir, installed=installed), needed, pg_bin_dir,
                            closest_to=closest_to)
    except tools.ToolsError as err:
        raise MigrationError(str(err), utilities_fix(needed)) from err


def utilities_fix(needed: int) -> str:
    return (f'Install them for this user with `{install.install_command(needed)}` (or add --install-utilities '
            f'to run), or install PostgreSQL {needed} client programs yourself (for example `apt-get install '
            f'postgresql-client-{needed}`) and point --pg-bin-dir at them.')


EXISTS_FIX = ('Pass --if-exists reuse to restore into it, or --if-exists drop to drop and re-create it (this '
              'deletes its data).')


def clashes(names, existing: set, ours=frozenset()) -> list:
    """Databases to migrate that the target has already (never `postgres`, which every server has, nor one an
    interrupted run of ours created)."""
    return [n for n in names if n in existing and n not in make.ALWAYS_PRESENT and n not in ours]


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
    icu: bool = True         # it can create ICU collations


def _target_facts(target: Endpoint) -> TargetFacts:
    with catalog.connect(target) as conn:
        return TargetFacts(catalog.server_major(conn), frozenset(catalog.database_names(conn)),
                           frozenset(catalog.role_names(conn)), frozenset(catalog.locales(conn)),
                           catalog.has_icu(conn))


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
    creating = make.will_create(db.name, db.name in target.existing, opts)
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
    method: str = ''    # the earlier run's method: its steps are only worth keeping for the same one
    tasks: dict = field(default_factory=dict)   # step id -> its state in the earlier run (see execution)
    online: bool = False   # run --online: the resumed run follows the source too
    published: dict = field(default_factory=dict)   # online: database -> what its earlier publish step made

    def options(self, opts: Options) -> Options:
        """The run's options for what is left: roles only if not done; our half-made databases dropped."""
        return replace(opts, roles=opts.roles and not self.roles_done, ours_to_drop=self.created,
                       online=opts.online or self.online)


def resume_state(wd: Path) -> Resume:
    manifest = run_state.read_manifest(wd)   # `running` with its process gone reads `interrupted`
    if manifest.get('format') not in run_state.READABLE or manifest.get('mode') != 'run':
        raise MigrationError(f'{wd} holds no run this version can resume.', 'Start a new run with another --work-dir.')
    if manifest.get('status') == run_state.RUNNING:
        raise MigrationError(f"Another run (process {manifest.get('pid')}) is using {wd}.",
                             'Wait for it, or stop it first.')
    previous = {d['name']: d for d in manifest.get('result', {}).get('databases', [])}
    names = [d['database']['name'] for d in manifest['databases']]
    done = [previous[n] for n in names if previous.get(n, {}).get('status') == run_state.SUCCEEDED]
    tasks = manifest.get('tasks', {})
    # A createdb under way when the run was killed may have created it: ours either way.
    created = frozenset(n for n in names if f'{n}/create' in tasks
                        or 'create' in previous.get(n, {}).get('durations', {}))
    roles = manifest.get('result', {}).get('roles', {}).get('status')
    finished = {d['name'] for d in done}
    todo = [n for n in names if n not in finished]
    return Resume(done, [e for e in manifest['databases'] if e['database']['name'] in finished],
                  todo, created - finished, roles in (run_state.SUCCEEDED, run_state.SKIPPED),
                  manifest.get('method', ''), tasks, bool(manifest.get('online')),
                  {n: previous[n]['online'] for n in todo if 'online' in previous.get(n, {})})


def resumed_steps(resume: Optional[Resume], method: str) -> tuple:
    """What of the unfinished databases an earlier run of the same method did that need not be done again:
    (step ids, stream: database -> the tables it copied). The roles are dumped and the target's roles
    listed once: a resume restores the roles against the list from before the first run. A finished
    directory dump is restored from, not dumped again. A stream copy whose tables were created continues
    table by table (those not finished are emptied and copied again) unless its last restore pass had begun
    (then what the run made is removed and made again: half of post-data is not something to build on)."""
    skip, tables = set(), {}
    if resume is None:
        return frozenset(), tables
    done = {i for i, t in resume.tasks.items() if run_state.step_status(t) == run_state.SUCCEEDED}
    if not resume.roles_done:
        skip |= {'roles-dump', 'roles-existing'} & done
    if resume.method != method:
        return frozenset(skip), tables
    for name in resume.todo:
        def state(step, name=name):
            return run_state.step_status(resume.tasks.get(f'{name}/{step}'))
        if resume.online:
            skip |= _online_resumed(resume, name, done, state)
            continue
        if method == 'directory' and state('dump') == run_state.SUCCEEDED:
            skip.add(f'{name}/dump')
        if method == 'stream' and state('restore-pre') == run_state.SUCCEEDED and state('restore') is None:
            skip |= {f'{name}/{step}' for step in ('drop', 'create', 'footprint', 'restore-schemas', 'restore-pre')}
            tables[name] = set(resume.tasks.get(f'{name}/copy', {}).get('tablesDone', []))
    return frozenset(skip), tables


def _online_resumed(resume: Resume, name: str, done: set, state) -> set:
    """run --online: once every table is in and its post-data restored, what is left (ANALYZE, the subscription,
    the catch-up) goes on from the same slot: nothing copied again, nothing applied twice. Before that the copy
    cannot go on: the slot's exported snapshot ended with the earlier run, and a table copied in another snapshot
    would miss or repeat the changes in between; the database is then migrated again from the start, with a new
    slot (the earlier one is removed first, see run.py)."""
    gone = resume.published.get(name, {}).get('status') in ('stopped', 'cancelled')   # its slot was removed
    if state('restore') != run_state.SUCCEEDED or gone:
        return set()
    made = {f'{name}/{step}' for step in ('drop', 'create', 'footprint')}   # the target database is the one to keep
    return {i for i in done if i.startswith(f'{name}/')} | made


def _work_dir(work_dir, reuse, create: bool, dbs=(), method='plain') -> Path:
    """Created (and guarded) for execution; only named for show-commands, which must not touch the disk."""
    if not create:
        return Path(work_dir or 'pgdump')
    wd = workdir.prepare(work_dir or workdir.default_path(), reuse)
    if method == 'directory':  # pg_dump -Fd refuses a folder that exists; never delete a user's dump for it
        dumps = (make.files_for(wd, d.name, method).dump for d in dbs)
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
             resume: Optional[Resume] = None, installed=()) -> Plan:
    ensure_distinct(source, target)
    skip, tables_done = resumed_steps(resume, opts.method)
    if resume is not None:
        names, reuse_work_dir, opts = resume.todo, True, resume.options(opts)
        if create and opts.method == 'directory':  # the interrupted run's own partial dumps, in its work dir
            for name in resume.todo:
                if f'{name}/dump' not in skip:
                    shutil.rmtree(make.files_for(Path(work_dir), name, 'directory').dump, ignore_errors=True)
    facts = facts or inspect(source, target, names or None)
    smajor, dbs, no_passwords = facts.source_major, facts.databases, facts.no_role_passwords
    if resume is not None:  # nothing left to do is not "every database"
        dbs = [d for d in dbs if d.name in resume.todo]
    tmajor, existing_dbs = facts.target.major, facts.target.existing
    toolset = _choose_tools(max(smajor, tmajor), pg_bin_dir, closest_to=tmajor, installed=installed)
    source, target = _for_utilities(source, toolset, smajor), _for_utilities(target, toolset, tmajor)
    opts = replace(opts, statistics=toolset.major >= STATISTICS_SINCE and tmajor >= STATISTICS_SINCE)
    _check_existing(dbs, existing_dbs, opts)
    login = _login(target)
    created = {d.name: _as_created(d, facts.target, opts, login, opts.roles) for d in dbs}
    wd = _work_dir(work_dir, reuse_work_dir, create, [d for d in dbs if f'{d.name}/dump' not in skip], opts.method)
    steps = make.roles_steps(toolset, source, target, wd, no_passwords, resumed=resume is not None) \
        if opts.roles else []
    notes = {}
    for db in dbs:
        files = make.files_for(wd, db.name, opts.method)
        as_created, owner, notes[db.name] = created[db.name]
        creating = make.will_create(db.name, db.name in existing_dbs, opts)
        create_steps = make.create_steps(toolset, target, as_created, db.name in existing_dbs, opts, owner) \
            if creating else [make.footprint_step(target, db.name, wd, resume is not None)]
        if opts.method == 'plain':
            steps += create_steps + make.streamed_steps(toolset, source, target, db, wd, opts)
        elif opts.method == 'stream':
            before, after = make.stream_steps(toolset, source, target, db, wd, opts)
            steps += before + create_steps + after
        else:
            steps += make.dump_steps(toolset, source, db, wd, opts) + create_steps
            steps += make.restore_steps(toolset, target, db.name, files.dump, files, opts, plain=False)
        steps += _properties(toolset, target, db.name, facts.properties.get(db.name), files, opts,
                             notes[db.name], created=creating)
    make.link(steps, opts.jobs)
    return Plan('run', steps, toolset, wd, opts, dbs, source, target, smajor, tmajor,
                tools_major_needed=max(smajor, tmajor), notes=notes, properties=facts.properties, resumed=resume,
                skip=skip & {s.id for s in steps}, tables_done=tables_done)


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
    return make.properties_step(toolset, target, database, statements, files)


def plan_dump(source: Endpoint, opts: Options, names=None, work_dir=None, reuse_work_dir=False,
              pg_bin_dir=None, create=True, installed=()) -> Plan:
    smajor, dbs, no_passwords, props = _source_facts(source, names)
    toolset = _choose_tools(smajor, pg_bin_dir, installed=installed)
    source = _for_utilities(source, toolset, smajor)
    wd = _work_dir(work_dir, reuse_work_dir, create, dbs, opts.method)
    steps = make.roles_steps(toolset, source, source, wd, no_passwords)[:1] if opts.roles else []
    for db in dbs:
        steps += make.dump_steps(toolset, source, db, wd, opts)
    make.link(steps, opts.jobs)
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
                 target_database: Optional[str] = None, names=None, pg_bin_dir=None, installed=()) -> Plan:
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
        manifest = run_state.read_manifest(wd)
        if manifest.get('format') not in run_state.READABLE or manifest.get('mode') not in ('dump', 'run'):
            raise MigrationError(f'{wd} holds a migration.json this version cannot read.',
                                 'Dump again with this version of the extension.')
        if manifest.get('method') == 'stream':
            raise MigrationError(f'{wd} is the work dir of a stream run: it copied tables server to server and kept '
                                 'no data files to restore from.',
                                 'Dump with `az postgres dumprestore dump` (or run --method directory) to get files.')
        unfinished = [d['name'] for d in manifest.get('result', {}).get('databases', []) if d['status'] != 'succeeded']
        if manifest.get('status') != run_state.SUCCEEDED or unfinished:
            how = 'was interrupted' if manifest.get('status') == run_state.INTERRUPTED else 'did not finish'
            raise MigrationError(f"The dump in {wd} {how}{': ' + ', '.join(unfinished) if unfinished else ''}"
                                 '; restoring it would give a partial copy.',
                                 'Run `az postgres dumprestore dump` again.')
        dbs = select_databases([Database(**d['database']) for d in manifest['databases']], names)
        inputs = {d['database']['name']: (wd / d['dump'], d['format']) for d in manifest['databases']}
        props = {d['database']['name']: dbprops.DatabaseProps(**d['properties'])
                 for d in manifest['databases'] if d.get('properties')}
        needed = max(tmajor, manifest['utilitiesMajor'])
        has_roles, method = (wd / 'roles.raw.sql').exists(), manifest['method']
    opts = replace(opts, method=method)
    toolset = _choose_tools(needed, pg_bin_dir, closest_to=tmajor, installed=installed)
    target = _for_utilities(target, toolset, tmajor)
    # A run onto an 18 target dumped statistics; restored elsewhere, a server before 18 has no function for them.
    opts = replace(opts, no_statistics=toolset.major >= STATISTICS_SINCE > tmajor)
    _check_existing(dbs, existing_dbs, opts)
    steps = make.roles_steps(toolset, target, target, wd, True)[1:] if opts.roles and has_roles else []
    login, notes = _login(target), {}
    for db in dbs:
        dump, fmt = inputs[db.name]
        files = make.files_for(wd, db.name, method)
        as_created, owner, notes[db.name] = _as_created(db, tgt, opts, login, opts.roles and has_roles)
        create_steps = make.create_steps(toolset, target, as_created, db.name in existing_dbs, opts, owner)
        steps += create_steps
        steps += make.restore_steps(toolset, target, db.name, dump, files, opts, plain=fmt == 'plain')
        steps += _properties(toolset, target, db.name, props.get(db.name), files, opts, notes[db.name],
                             created=bool(create_steps))
    make.link(steps, opts.jobs)
    return Plan('restore', steps, toolset, wd, opts, dbs, target=target, target_major=tmajor,
                tools_major_needed=needed, notes=notes)
