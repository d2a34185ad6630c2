"""The plan is data: ordered steps, each an argv for a PostgreSQL utility (or one in-process step).

`run` executes a plan, `--dry-run` prints it, and `show-commands` renders the same plan as shell
text: one source of truth for what is run. Steps carry no secret: each names the side (source or
target) whose password the runner puts in the child's environment."""
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from azext_pgdump.pg.catalog import Database
from azext_pgdump.pg.endpoint import Endpoint
from azext_pgdump.pg.tools import Toolset
from azext_pgdump.pg.workdir import file_stem

# Restores may turn off synchronous commit for their own sessions: a user setting, allowed on Azure,
# and the single biggest win for many small transactions.
RESTORE_ENV = {'PGOPTIONS': '-c synchronous_commit=off'}
# Every server has it, and on Azure it belongs to the service: restored into, never dropped or created.
ALWAYS_PRESENT = frozenset({'postgres'})


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

    @property
    def needs_password(self) -> bool:
        """A PostgreSQL utility logging in as `side` (not the in-process roles clean-up)."""
        return bool(self.argv) and self.argv[0] != 'az'

    def as_dict(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if v not in (None, {}, []) and k != 'pipe'}
        if self.pipe:
            out['pipe'] = self.pipe.as_dict()
        return out


@dataclass
class Options:
    method: str = 'directory'      # 'plain' or 'directory'
    jobs: int = 2
    roles: bool = True
    no_owner: bool = False
    no_acl: bool = False
    if_exists: str = 'fail'        # 'fail', 'drop' or 'reuse'


@dataclass
class DatabaseFiles:
    dump: Path
    errors_log: Path


def files_for(workdir: Path, database: str, method: str) -> DatabaseFiles:
    stem = file_stem(database)
    return DatabaseFiles(dump=workdir / (f'{stem}.sql' if method == 'plain' else f'{stem}.dir'),
                         errors_log=workdir / f'{stem}.errors.log')


def _owner_acl_flags(opts: Options) -> list:
    return (['--no-owner'] if opts.no_owner else []) + (['--no-acl'] if opts.no_acl else [])


def roles_steps(tools: Toolset, source: Endpoint, target: Endpoint, workdir: Path, no_passwords: bool) -> list:
    raw, cleaned = workdir / 'roles.raw.sql', workdir / 'roles.sql'
    dumpall = [tools.path('pg_dumpall'), '--roles-only', f'--file={raw}', f'--dbname={source.conninfo("postgres")}']
    if no_passwords:
        dumpall.insert(2, '--no-role-passwords')
    existing = workdir / 'existing_roles.txt'
    login = target.user.rsplit('@', 1)[0] if target.kind == 'single' else target.user
    return [
        Step('roles-dump', 'Dump roles with pg_dumpall', 'source', dumpall, output=str(raw)),
        Step('roles-existing', 'List the roles the target has already', 'target',
             [tools.path('psql'), '-X', '-A', '-t', '-c', 'SELECT rolname FROM pg_roles ORDER BY 1',
              f'--dbname={target.conninfo("postgres")}'], stdout=str(existing)),
        # Done in-process by `run`; the argv is the same work as a command, for show-commands.
        Step('roles-clean', 'Remove Azure service roles, superuser-only attributes and existing roles',
             'target', ['az', 'postgres', 'dumprestore', 'clean-roles', f'--input={raw}', f'--output-file={cleaned}',
                        f'--existing-roles={existing}', f'--target-login={login}'],
             output=str(cleaned), input=str(raw)),
        Step('roles-restore', 'Create the roles on the target', 'target',
             [tools.path('psql'), '-X', '-q', '-v', 'ON_ERROR_STOP=0', f'--file={cleaned}',
              f'--dbname={target.conninfo("postgres")}'], stderr=str(workdir / 'roles.errors.log')),
    ]


def dump_steps(tools: Toolset, source: Endpoint, db: Database, workdir: Path, opts: Options) -> list:
    files = files_for(workdir, db.name, opts.method)
    argv = [tools.path('pg_dump'), *_owner_acl_flags(opts)]
    if opts.method == 'plain':
        argv += ['--format=plain', f'--file={files.dump}']
    else:
        argv += ['--format=directory', f'--jobs={opts.jobs}', '--compress=0', f'--file={files.dump}']
    argv.append(f'--dbname={source.conninfo(db.name)}')
    return [Step('dump', f'Dump {db.name}', 'source', argv, database=db.name, output=str(files.dump),
                 stderr=str(workdir / f'{file_stem(db.name)}.dump.log'))]


def create_steps(tools: Toolset, target: Endpoint, db: Database, exists: bool, opts: Options) -> list:
    maintenance = f'--maintenance-db={target.conninfo("postgres")}'
    steps = []
    if exists and (opts.if_exists == 'reuse' or db.name in ALWAYS_PRESENT):
        return steps
    if exists and opts.if_exists == 'drop':
        steps.append(Step('drop', f'Drop the existing {db.name} on the target', 'target',
                          [tools.path('dropdb'), maintenance, db.name], database=db.name))
    argv = [tools.path('createdb'), maintenance, '--template=template0', f'--encoding={db.encoding}']
    if db.locale_provider == 'i' and db.icu_locale:
        argv += ['--locale-provider=icu', f'--icu-locale={db.icu_locale}']
    elif db.locale_provider == 'b' and db.icu_locale:  # PostgreSQL 17's builtin provider keeps it in datlocale
        argv += ['--locale-provider=builtin', f'--builtin-locale={db.icu_locale}']
    argv += [f'--lc-collate={db.collate}'] if db.collate else []
    argv += [f'--lc-ctype={db.ctype}'] if db.ctype else []
    argv.append(db.name)
    steps.append(Step('create', f'Create {db.name} on the target', 'target', argv, database=db.name))
    return steps


def restore_steps(tools: Toolset, target: Endpoint, database: str, dump: Path, errors_log: Path,
                  opts: Options, plain: bool) -> list:
    dbarg = f'--dbname={target.conninfo(database)}'
    if plain:
        argv = [tools.path('psql'), '-X', '-q', '-v', 'ON_ERROR_STOP=0', f'--file={dump}', dbarg]
    else:
        argv = [tools.path('pg_restore'), *_owner_acl_flags(opts), f'--jobs={opts.jobs}', dbarg, str(dump)]
    return [
        Step('restore', f'Restore {database}', 'target', argv, database=database, stderr=str(errors_log),
             env=dict(RESTORE_ENV), input=str(dump)),
        Step('analyze', f'Analyze {database} so the planner has statistics', 'target',
             [tools.path('vacuumdb'), '--analyze-only', '--quiet', f'--jobs={opts.jobs}', dbarg],
             database=database),
    ]


def streamed_steps(tools: Toolset, source: Endpoint, target: Endpoint, db: Database, workdir: Path,
                   opts: Options) -> list:
    """Plain method inside `run`: psql restores the dump while pg_dump writes it (the file is kept too),
    so the move takes about as long as the slower of the two instead of their sum."""
    files = files_for(workdir, db.name, 'plain')
    dump = [tools.path('pg_dump'), *_owner_acl_flags(opts), '--format=plain', f'--dbname={source.conninfo(db.name)}']
    restore = Step('restore', f'Restore {db.name}', 'target',
                   [tools.path('psql'), '-X', '-q', '-v', 'ON_ERROR_STOP=0', f'--dbname={target.conninfo(db.name)}'],
                   database=db.name, stderr=str(files.errors_log), env=dict(RESTORE_ENV), input=str(files.dump))
    transfer = Step('transfer', f'Dump {db.name} and restore it as it streams', 'source', dump, database=db.name,
                    stdout=str(files.dump), output=str(files.dump),
                    stderr=str(workdir / f'{file_stem(db.name)}.dump.log'), pipe=restore)
    return [transfer, restore_steps(tools, target, db.name, files.dump, files.errors_log, opts, plain=True)[1]]
