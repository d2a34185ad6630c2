"""The plan is data: a graph of steps, each an argv for a PostgreSQL utility (or one in-process step),
with the steps it comes after and the connections it takes on each server.

`run` executes a plan (pg/scheduler.py), `--dry-run` prints it, and `show-commands` renders the same
plan as shell text in an order the graph allows: one source of truth for what is run. Steps carry no
secret: each names the side (source or target) whose password the runner puts in the child's environment."""
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from azext_pgdump.pg.catalog import Database
from azext_pgdump.pg.endpoint import Endpoint
from azext_pgdump.pg.stream import ALL_TABLE_DATA
from azext_pgdump.pg.tools import Toolset
from azext_pgdump.pg.workdir import file_stem

# Restores may turn off synchronous commit for their own sessions: a user setting, allowed on Azure,
# and the single biggest win for many small transactions.
RESTORE_ENV = {'PGOPTIONS': '-c synchronous_commit=off'}
# Every server has it, and on Azure it belongs to the service: restored into, never dropped or created.
ALWAYS_PRESENT = frozenset({'postgres'})


@dataclass(frozen=True)
class Action:
    """Work `run` does itself (kind 'action'): its name and arguments. The same work is an az command of that
    name (clean-roles, clean-dump), which is what show-commands prints; None for work only a run does."""
    name: str
    args: tuple = ()               # (option, value) pairs; value True for a flag
    command: bool = True           # an az command does the same (False: only a run needs it, a script does not)

    def __post_init__(self):  # paths as text: the plan is printed as JSON
        object.__setattr__(self, 'args', tuple((k, str(v) if isinstance(v, Path) else v) for k, v in self.args))

    def option(self, key: str, default=None):
        return dict(self.args).get(key, default)

    def argv(self) -> list:
        if not self.command:
            return []
        return ['az', 'postgres', 'dumprestore', self.name] + [
            f'--{k}' if v is True else f'--{k}={v}' for k, v in self.args if v is not None and v is not False]


# How a step is done, and how its end is judged: data the scheduler, the recording, resume and the renderers
# read, instead of each matching step names.
KINDS = ('program', 'pipe', 'action', 'copy')
JUDGES = ('exit',    # its exit code
          'log',     # its errors log (pg/errorlog.py): real errors, or an exit only they could explain
          'later')   # its errors log is judged with the restore pass after it, which appends to the same log


@dataclass
class Step:
    name: str                      # roles-dump, roles-clean, roles-restore, drop, create, dump, restore, analyze
    description: str
    side: str                      # whose login the step uses: 'source' or 'target'
    argv: list = field(default_factory=list)
    database: Optional[str] = None
    stdout: Optional[str] = None   # file that receives the child's stdout
    stderr: Optional[str] = None   # errors log that receives its stderr
    output: Optional[str] = None   # what the step writes, for progress (bytes so far)
    input: Optional[str] = None    # the dump a restore reads
    pipe: Optional['Step'] = None  # a step that reads this one's stdout as it is written (stdout is teed)
    env: dict = field(default_factory=dict)   # non-secret environment for the child
    stderr_append: bool = False    # add to the errors log an earlier step of the same restore began
    filter: list = field(default_factory=list)  # piped: the clean-up between tee and the consumer (see dumpclean)
    id: str = ''                   # unique in the plan: '<database>/<name>', or the name of a roles step
    after: list = field(default_factory=list)   # ids of the steps that must have ended before this one starts
    uses: dict = field(default_factory=dict)    # side -> connections it holds there while it runs
    kind: str = 'program'          # one of KINDS
    judge: str = 'exit'            # one of JUDGES
    stops_script: bool = False     # a pasted script stops when it fails (a dump, a createdb); a restore goes on
    writes_dump: bool = False      # reads the source (in the run's snapshot) and writes the dump the result names
    action: Optional[Action] = None  # kind 'action': what run does in-process

    def __post_init__(self):
        if self.action is not None:
            self.kind = 'action' if self.kind == 'program' else self.kind
            self.argv = self.action.argv()
        elif self.pipe is not None:
            self.kind = 'pipe'

    @property
    def in_process(self) -> bool:
        """Done by `run` itself: no program, no password (the stream copy is rendered as per-table pipelines)."""
        return self.kind in ('action', 'copy')

    @property
    def needs_password(self) -> bool:
        """A PostgreSQL utility logging in as `side` (not an in-process clean-up)."""
        return bool(self.argv) and not self.in_process

    @property
    def logged(self) -> bool:
        """Its errors log is worth reading after it (a script greps it; the run judges it)."""
        return self.judge == 'log' or (self.pipe is not None and self.pipe.judge == 'log')

    def as_dict(self) -> dict:
        out = {k: v for k, v in asdict(self).items()
               if v not in (None, {}, [], '', False) and k not in ('pipe', 'action')}
        if self.pipe:
            out['pipe'] = self.pipe.as_dict()
        if self.action:
            out['action'] = {'name': self.action.name, 'args': {k: v for k, v in self.action.args}}
        return out


@dataclass
class Options:
    method: str = 'directory'      # 'plain', 'directory' or 'stream'
    jobs: int = 2
    roles: bool = True
    no_owner: bool = False
    no_acl: bool = False
    if_exists: str = 'fail'        # 'fail', 'drop' or 'reuse'
    locale_map: dict = field(default_factory=dict)   # source locale -> target locale (--locale-map)
    split_bytes: int = 1 << 30     # stream: tables larger than this are copied as --jobs ranges at once (0: never)
    ours_to_drop: frozenset = frozenset()   # --resume: databases an interrupted run created: dropped, made again
    statistics: bool = False       # utilities and target 18+: optimizer statistics travel with the dump
    no_statistics: bool = False    # restore: the dump may carry statistics a target before 18 cannot take
    online: bool = False           # stream: the target then follows the source (logical replication) until cutover
    max_slot_wal: Optional[int] = None   # online: the WAL a slot may keep on the source before following stops
    replica_identity_full: bool = False   # online: tables with no key are published with REPLICA IDENTITY FULL


@dataclass
class DatabaseFiles:
    dump: Path
    errors_log: Path
    stem: Path          # workdir/<stem>: the prefix of this database's other files

    def beside(self, suffix: str) -> Path:
        return self.stem.with_name(self.stem.name + suffix)


def files_for(workdir: Path, database: str, method: str) -> DatabaseFiles:
    stem = file_stem(database)
    suffix = {'plain': '.sql', 'stream': '.schema.dump'}.get(method, '.dir')
    return DatabaseFiles(dump=workdir / f'{stem}{suffix}',
                         errors_log=workdir / f'{stem}.errors.log', stem=workdir / stem)


def clean_dump(source, output=None, schemas=None, statistics: bool = True) -> Action:
    """The in-process clean-up of a dump (pg/dumpclean.py), as the az command that does the same."""
    return Action('clean-dump', (('input', source), ('output-file', output), ('no-statistics', not statistics),
                                 ('schemas-file', schemas)))


def clean_dump_argv(source, output=None, schemas=None, statistics: bool = True) -> list:
    return clean_dump(source, output, schemas, statistics).argv()


def psql_restore(tools: Toolset, *args: str) -> list:
    # --echo-errors puts each failed statement beside its error, so the errors log can be judged.
    return [tools.path('psql'), '-X', '-q', '--echo-errors', '-v', 'ON_ERROR_STOP=0', *args]


def _owner_acl_flags(opts: Options) -> list:
    return (['--no-owner'] if opts.no_owner else []) + (['--no-acl'] if opts.no_acl else [])


def _statistics(opts: Options) -> list:
    """PostgreSQL 18 dumps and restores the planner's statistics, so the final ANALYZE has little left to do."""
    return ['--statistics'] if opts.statistics else []


def _lock_wait(source: Endpoint) -> list:
    """pg_dump locks every table it dumps; behind someone's ALTER TABLE it would wait for ever."""
    return [f'--lock-wait-timeout={source.lock_wait()}']


def roles_steps(tools: Toolset, source: Endpoint, target: Endpoint, workdir: Path, no_passwords: bool,
                resumed: bool = False) -> list:
    """`resumed`: the roles an interrupted run created may exist (and are not the user's: the list of the
    target's roles is the one from before that run)."""
    raw, cleaned = workdir / 'roles.raw.sql', workdir / 'roles.sql'
    dumpall = [tools.path('pg_dumpall'), '--roles-only', f'--file={raw}', f'--dbname={source.conninfo("postgres")}']
    if no_passwords:
        dumpall.insert(2, '--no-role-passwords')
    existing = workdir / 'existing_roles.txt'
    login = target.user.rsplit('@', 1)[0] if target.kind == 'single' else target.user
    return [
        Step('roles-dump', 'Dump roles with pg_dumpall', 'source', dumpall, output=str(raw), stops_script=True,
             writes_dump=True),
        Step('roles-existing', 'List the roles the target has already', 'target',
             [tools.path('psql'), '-X', '-A', '-t', '-c', 'SELECT rolname FROM pg_roles ORDER BY 1',
              f'--dbname={target.conninfo("postgres")}'], stdout=str(existing), stops_script=True),
        # Done in-process by `run`; the argv is the same work as a command, for show-commands.
        Step('roles-clean', 'Remove Azure service roles, superuser-only attributes and existing roles',
             'target', action=Action('clean-roles', (('input', raw), ('output-file', cleaned),
                                                     ('existing-roles', existing), ('target-login', login),
                                                     ('may-exist', resumed))),
             output=str(cleaned), input=str(raw), stops_script=True),
        Step('roles-restore', 'Create the roles on the target', 'target',
             psql_restore(tools, f'--file={cleaned}', f'--dbname={target.conninfo("postgres")}'),
             stderr=str(workdir / 'roles.errors.log'), judge='log'),
    ]


def dump_steps(tools: Toolset, source: Endpoint, db: Database, workdir: Path, opts: Options) -> list:
    files = files_for(workdir, db.name, opts.method)
    argv = [tools.path('pg_dump'), *_owner_acl_flags(opts), *_statistics(opts), *_lock_wait(source)]
    if opts.method == 'plain':
        argv += ['--format=plain', f'--file={files.dump}']
    else:
        argv += ['--format=directory', f'--jobs={opts.jobs}', '--compress=0', f'--file={files.dump}']
    argv.append(f'--dbname={source.conninfo(db.name)}')
    return [Step('dump', f'Dump {db.name}', 'source', argv, database=db.name, output=str(files.dump),
                 stderr=str(workdir / f'{file_stem(db.name)}.dump.log'), stops_script=True, writes_dump=True)]


def will_create(name: str, exists: bool, opts: Options) -> bool:
    """False when the target's own database is restored into (`postgres`, or --if-exists reuse)."""
    return not (exists and name not in opts.ours_to_drop and (opts.if_exists == 'reuse' or name in ALWAYS_PRESENT))


def create_steps(tools: Toolset, target: Endpoint, db: Database, exists: bool, opts: Options,
                 owner: Optional[str] = None) -> list:
    """`db` carries the locale to create with (already mapped for the target); `owner` the role to own it."""
    maintenance = f'--maintenance-db={target.conninfo("postgres")}'
    steps = []
    if not will_create(db.name, exists, opts):
        return steps
    if exists and (opts.if_exists == 'drop' or db.name in opts.ours_to_drop):
        steps.append(Step('drop', f'Drop the existing {db.name} on the target', 'target',
                          [tools.path('dropdb'), maintenance, db.name], database=db.name, stops_script=True))
    argv = [tools.path('createdb'), maintenance, '--template=template0', f'--encoding={db.encoding}']
    argv += [f'--owner={owner}'] if owner else []
    if db.locale_provider == 'i' and db.icu_locale:
        argv += ['--locale-provider=icu', f'--icu-locale={db.icu_locale}']
    elif db.locale_provider == 'b' and db.icu_locale:  # PostgreSQL 17's builtin provider keeps it in datlocale
        argv += ['--locale-provider=builtin', f'--builtin-locale={db.icu_locale}']
    argv += [f'--lc-collate={db.collate}'] if db.collate else []
    argv += [f'--lc-ctype={db.ctype}'] if db.ctype else []
    argv.append(db.name)
    steps.append(Step('create', f'Create {db.name} on the target', 'target', argv, database=db.name,
                      stops_script=True))
    return steps


def footprint_step(target: Endpoint, database: str, workdir: Path, resume: bool) -> Step:
    """A database the run does not create (`postgres`, --if-exists reuse): before the run first writes into it,
    what it holds is noted; a resumed run first removes what the interrupted one made there (pg/footprint.py)."""
    path = workdir / f'{file_stem(database)}.before.json'
    what = f'Remove what the interrupted run made in {database}' if resume else \
        f'Note what {database} holds before the run writes into it'
    return Step('footprint', what, 'target', database=database,
                action=Action('footprint', (('file', str(path)), ('undo', resume)), command=False))


def restore_steps(tools: Toolset, target: Endpoint, database: str, dump: Path, files: DatabaseFiles,
                  opts: Options, plain: bool) -> list:
    dbarg = f'--dbname={target.conninfo(database)}'
    log = str(files.errors_log)
    if plain:
        cleaned = files.beside('.restore.sql')
        steps = [Step('restore-clean', f'Leave Azure service objects out of {database} and set owners last',
                      'target', action=clean_dump(dump, cleaned, statistics=not opts.no_statistics),
                      database=database, input=str(dump), output=str(cleaned), stops_script=True),
                 Step('restore', f'Restore {database}', 'target', psql_restore(tools, f'--file={cleaned}', dbarg),
                      database=database, stderr=log, env=dict(RESTORE_ENV), input=str(dump), judge='log')]
    else:
        listing, schemas = files.beside('.toc.list'), files.beside('.toc.schemas.list')
        rest = files.beside('.toc.rest.list')
        flags = _owner_acl_flags(opts) + (['--no-statistics'] if opts.no_statistics else [])
        steps = [Step('restore-list', f'List what the dump of {database} holds', 'target',
                      [tools.path('pg_restore'), '--list', f'--file={listing}', str(dump)], database=database,
                      output=str(listing), stops_script=True),
                 Step('restore-clean', f'Leave Azure service objects out of {database}; schemas and grants first',
                      'target', action=clean_dump(listing, rest, schemas), database=database, input=str(listing),
                      output=str(rest), stops_script=True),
                 Step('restore-schemas', f'Restore the schemas of {database} and their grants', 'target',
                      [tools.path('pg_restore'), *flags, f'--use-list={schemas}', dbarg, str(dump)],
                      database=database, stderr=log, env=dict(RESTORE_ENV), input=str(dump), judge='later'),
                 Step('restore', f'Restore {database}', 'target',
                      [tools.path('pg_restore'), *flags, f'--jobs={opts.jobs}', f'--use-list={rest}', dbarg, str(dump)],
                      database=database, stderr=log, stderr_append=True, env=dict(RESTORE_ENV), input=str(dump),
                      judge='log')]
    return steps + [analyze_step(tools, target, database, opts)]


# With statistics restored from the dump, ANALYZE only what they do not cover: tables the source had never analyzed
# and tables with extended statistics (whose data pg_dump does not carry). vacuumdb --missing-stats-only would
# choose the same, but reads pg_statistic, which Azure's admin (not a superuser) may not.
ANALYZE_UNCOVERED = r"""DO $$DECLARE t regclass; BEGIN
FOR t IN SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'm', 'p') AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
 AND (c.reltuples < 0 OR EXISTS (SELECT FROM pg_catalog.pg_statistic_ext e WHERE e.stxrelid = c.oid))
LOOP EXECUTE pg_catalog.format('ANALYZE %s', t); END LOOP; END $$"""


def analyze_step(tools: Toolset, target: Endpoint, database: str, opts: Options) -> Step:
    dbarg = f'--dbname={target.conninfo(database)}'
    if opts.statistics:
        return Step('analyze', f'Analyze what the statistics of the dump of {database} do not cover', 'target',
                    [tools.path('psql'), '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-c', ANALYZE_UNCOVERED, dbarg],
                    database=database)
    return Step('analyze', f'Analyze {database} so the planner has statistics', 'target',
                [tools.path('vacuumdb'), '--analyze-only', '--quiet', f'--jobs={opts.jobs}', dbarg], database=database)


def properties_step(tools: Toolset, target: Endpoint, database: str, statements: list, files: DatabaseFiles) -> list:
    """The database's grants, settings and comment, as on the source: last, so that no setting (such as
    default_transaction_read_only) applies to the restore itself."""
    if not statements:
        return []
    argv = psql_restore(tools, *[a for s in statements for a in ('-c', s)], f'--dbname={target.conninfo("postgres")}')
    return [Step('properties', f'Give {database} the grants, settings and comment it has on the source', 'target',
                 argv, database=database, stderr=str(files.beside('.properties.log')), judge='log')]


def streamed_steps(tools: Toolset, source: Endpoint, target: Endpoint, db: Database, workdir: Path,
                   opts: Options) -> list:
    """Plain method inside `run`: psql restores the dump while pg_dump writes it (the file is kept too),
    so the move takes about as long as the slower of the two instead of their sum."""
    files = files_for(workdir, db.name, 'plain')
    dump = [tools.path('pg_dump'), *_owner_acl_flags(opts), *_statistics(opts), *_lock_wait(source), '--format=plain',
            f'--dbname={source.conninfo(db.name)}']
    restore = Step('restore', f'Restore {db.name}', 'target',
                   psql_restore(tools, f'--dbname={target.conninfo(db.name)}'), database=db.name,
                   stderr=str(files.errors_log), env=dict(RESTORE_ENV), input=str(files.dump), judge='log')
    # The file keeps what pg_dump wrote; psql gets it without Azure service objects, owners last.
    transfer = Step('transfer', f'Dump {db.name} and restore it as it streams', 'source', dump, database=db.name,
                    stdout=str(files.dump), output=str(files.dump),
                    stderr=str(workdir / f'{file_stem(db.name)}.dump.log'), pipe=restore,
                    filter=clean_dump_argv(Path('-')), stops_script=True, writes_dump=True)
    return [transfer, analyze_step(tools, target, db.name, opts)]


def stream_steps(tools: Toolset, source: Endpoint, target: Endpoint, db: Database, workdir: Path,
                 opts: Options) -> tuple:
    """`--method stream`: the schema (no table data) dumped under one exported snapshot, its pre-data
    restored (schemas and their grants first), every table copied source -> target by the workers of
    pg/stream.py in that snapshot, each table's indexes built as its data lands, then the rest (sequences,
    large objects, foreign keys, triggers, grants, ...) by pg_restore -j. Returns (steps before the
    target database exists, steps after)."""
    files = files_for(workdir, db.name, 'stream')
    listing, schemas = files.beside('.toc.list'), files.beside('.toc.schemas.list')
    rest, final = files.beside('.toc.rest.list'), files.beside('.toc.final.list')
    tables = str(files.beside('.tables.json'))   # list-tables writes it; the schema dump and the copy read it
    dbarg, log = f'--dbname={target.conninfo(db.name)}', str(files.errors_log)
    flags = _owner_acl_flags(opts)
    restore = [tools.path('pg_restore'), *flags]
    before = [Step('list-tables', f'List the tables of {db.name} to copy, in an exported snapshot', 'source',
                   database=db.name, output=tables, stops_script=True,
                   action=Action('list-tables', (('output', tables),), command=False)),
              Step('dump-schema', f'Dump the schema of {db.name} (no table data) in an exported snapshot', 'source',
                   [tools.path('pg_dump'), *flags, *_statistics(opts), *_lock_wait(source), '--format=custom',
                    '--compress=0',
                    ALL_TABLE_DATA, f'--file={files.dump}', f'--dbname={source.conninfo(db.name)}'],
                   database=db.name, output=str(files.dump), stderr=str(files.beside('.dump.log')), stops_script=True,
                   writes_dump=True, input=tables)]
    after = [
        Step('restore-list', f'List what the schema of {db.name} holds', 'target',
             [tools.path('pg_restore'), '--list', f'--file={listing}', str(files.dump)], database=db.name,
             output=str(listing), stops_script=True),
        Step('restore-clean', f'Leave Azure service objects out of {db.name}; schemas and grants first', 'target',
             action=clean_dump(listing, rest, schemas), database=db.name, input=str(listing), output=str(rest),
             stops_script=True),
        Step('restore-schemas', f'Restore the schemas of {db.name} and their grants', 'target',
             [*restore, f'--use-list={schemas}', dbarg, str(files.dump)], database=db.name, stderr=log,
             env=dict(RESTORE_ENV), input=str(files.dump), judge='later'),
        Step('restore-pre', f'Create the tables and types of {db.name}', 'target',
             [*restore, '--section=pre-data', f'--use-list={rest}', dbarg, str(files.dump)], database=db.name,
             stderr=log, stderr_append=True, env=dict(RESTORE_ENV), input=str(files.dump), judge='later'),
        Step('copy', f'Copy every table of {db.name} from source to target, {opts.jobs} at a time', 'source',
             database=db.name, input=str(rest), output=str(final), kind='copy',
             action=Action('copy', (('tables', tables),), command=False)),
        Step('restore', f'Restore the rest of {db.name}: sequences, large objects, constraints, triggers, grants',
             'target', [*restore, '--section=data', '--section=post-data', f'--jobs={opts.jobs}',
                        f'--use-list={final}', dbarg, str(files.dump)],
             database=db.name, stderr=log, stderr_append=True, env=dict(RESTORE_ENV), input=str(files.dump),
             judge='log'),
        analyze_step(tools, target, db.name, opts)]
    if opts.online:
        before.insert(0, Step('publish', f'Publish the tables of {db.name} (its replication slot comes with its '
                                         'snapshot)', 'source', database=db.name, stops_script=True,
                              action=Action('publish', command=False)))
        after.append(Step('subscribe', f'Subscribe {db.name} on the target to the source, from the slot on', 'target',
                          database=db.name, stops_script=True, action=Action('subscribe', command=False)))
    return before, after


def link(steps: list, jobs: int) -> list:
    """Make the list a graph: each step comes after the one before it of the same database (or of the
    roles); a database's first step on the target comes after the roles are restored (its owner and grants
    name them); databases do not wait for each other, only for connections (see connections())."""
    last, roles_end, on_target = {}, None, set()
    for step in steps:
        step.id = f'{step.database}/{step.name}' if step.database else step.name
        previous = last.get(step.database)
        step.after = [previous.id] if previous else []
        if step.database is None:
            roles_end = step
        elif step.side == 'target' and step.database not in on_target:
            on_target.add(step.database)
            step.after += [roles_end.id] if roles_end is not None else []
        step.uses = connections(step, jobs)
        last[step.database] = step
    return steps


def connections(step: Step, jobs: int) -> dict:
    """How many connections a step holds on each server: what the executor's per-server budget counts."""
    if step.kind == 'copy':
        return {'source': jobs, 'target': jobs}
    if step.pipe is not None:
        return {step.side: 1, step.pipe.side: 1}
    if step.in_process:
        return {}
    parallel = [int(a.split('=', 1)[1]) for a in step.argv if a.startswith('--jobs=')]
    return {step.side: parallel[0] if parallel else 1}
