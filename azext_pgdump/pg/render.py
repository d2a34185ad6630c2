"""Render a plan as commands to paste: bash, PowerShell or cmd. The same steps `run` executes.

No password is ever printed: bash and PowerShell read it with a hidden prompt into a variable, cmd
expects it set beforehand; each command gets it as PGPASSWORD in its own environment."""
import re
import shlex
from dataclasses import replace

from azext_pgdump.pg import stream
from azext_pgdump.pg.steps import Step, clean_dump
from azext_pgdump.pg.workdir import file_stem

PROMPT_VARS = {'source': 'SOURCE_PGPASSWORD', 'target': 'TARGET_PGPASSWORD'}
CHECKED_PROGRAMS = ('pg_dump', 'pg_dumpall', 'pg_restore', 'psql')


def ps_quote(arg: str) -> str:
    return "'" + arg.replace("'", "''") + "'"


def cmd_quote(arg: str) -> str:
    # Inside double quotes cmd takes & | < > ^ literally; % must be doubled in a batch file, and the
    # programs' own parser (MSVCRT) reads \" as a quote character. The script enables delayed expansion
    # (so that passwords are never re-parsed): then ! and, in a token holding one, ^ need a caret.
    arg = arg.replace('%', '%%').replace('"', '\\"')
    if '!' in arg:
        arg = arg.replace('^', '^^').replace('!', '^!')
    return '"' + arg + '"'


class _Shell:
    comment = '#'

    def __init__(self, plan):
        self.plan = plan

    def sides(self):
        return [s for s in ('source', 'target') if getattr(self.plan, s) is not None]

    def password_var(self, step):
        """The variable that holds the password this step logs in with, or None."""
        return PROMPT_VARS[step.side] if step.needs_password and step.side in self.sides() else None


class Bash(_Shell):
    quote = staticmethod(shlex.quote)

    def preamble(self):
        own = ' / '.join(PROMPT_VARS[side] for side in self.sides())
        lines = ['set -u -o pipefail', 'umask 077  # dumps hold data, roles files password hashes',
                 f'# Passwords: {own}, else PGPASSWORD, else ~/.pgpass (PGPASSFILE);',
                 '# a hidden prompt only when none is set and a terminal is there (read from it, not from stdin,',
                 '# so that `show-commands | bash` works).']
        for side in self.sides():
            ep, var = getattr(self.plan, side), PROMPT_VARS[side]
            lines += [f'{var}="${{{var}:-${{PGPASSWORD:-}}}}"',
                      f'if [ -z "${var}" ] && [ ! -r "${{PGPASSFILE:-$HOME/.pgpass}}" ] && '
                      '{ : < /dev/tty; } 2> /dev/null; then',
                      f'  IFS= read -rs -p {shlex.quote(f"Password for {ep.user} on {ep.name}: ")} {var} < /dev/tty '
                      '&& echo >&2',
                      'fi']
        lines.append(f'mkdir -p -m 700 {shlex.quote(str(self.plan.workdir))}')
        return lines

    def _env(self, step):
        var = self.password_var(step)
        pairs = [f'PGPASSWORD="${var}"'] if var else []
        return pairs + [f'{k}={shlex.quote(v)}' for k, v in step.env.items()]

    def _one(self, step: Step):
        words = self._env(step) + [shlex.quote(a) for a in step.argv]
        if step.stdout and not step.pipe:  # a piped step's stdout goes through tee
            words.append(f'> {shlex.quote(step.stdout)}')
        if step.stderr:
            words.append(f'{_redirect(step)} {shlex.quote(step.stderr)}')
        return ' '.join(words)

    def command(self, step: Step):
        if step.kind == 'action' and step.action.name == 'list-tables':
            return self._list_tables(step)
        if not step.argv and step.kind == 'action':
            return '# (done by run only, nothing to paste)'
        if step.kind == 'copy':
            return self._copy(step)
        if stream.ALL_TABLE_DATA in step.argv:
            return self._dump_schema(step)
        middle = ' '.join(shlex.quote(a) for a in step.filter) + ' | ' if step.filter else ''
        line = f'{self._one(step)} | tee {shlex.quote(step.stdout)} | {middle}{self._one(step.pipe)}' \
            if step.pipe else self._one(step)
        # Like run: stop at a failed dump, drop or create. A restore goes on (pg_restore exits 1 on harmless
        # errors); its errors log is read next.
        return line + (' || exit 1' if step.stops_script else '')

    def _tables_file(self, step: Step) -> str:
        return str(self.plan.workdir / f'{file_stem(step.database)}.tables')

    def _list_tables(self, step: Step):
        """The tables the copy moves, largest first (a script cannot share run's snapshot)."""
        plan = self.plan
        var = self.password_var(Step('x', '', 'source', ['psql']))
        listing = [str(plan.tools.bindir / 'psql'), '-X', '-At', '-c', stream.LIST_TABLES_FOR_SCRIPTS,
                   f'--dbname={plan.source.conninfo(step.database)}']
        pw = f'PGPASSWORD="${var}" ' if var else ''
        return f'{pw}{" ".join(shlex.quote(a) for a in listing)} > {shlex.quote(self._tables_file(step))} || exit 1'

    def _dump_schema(self, step: Step):
        """pg_dump leaves out the data of exactly the tables the copy moves (materialized views keep theirs)."""
        dump = Step(step.name, step.description, step.side, [a for a in step.argv if a != stream.ALL_TABLE_DATA],
                    database=step.database, stderr=step.stderr)
        return '\n'.join([
            f'mapfile -t tables < {shlex.quote(self._tables_file(step))}; excluded=()',
            'for t in "${tables[@]}"; do excluded+=("--exclude-table-data=$t"); done',
            f'{self._one(dump)} "${{excluded[@]}}" || exit 1'])

    def _copy(self, step: Step):
        """run's workers, as a script: each table a COPY pipe, `jobs` at a time. A script cannot share run's
        snapshot, so a source that changes meanwhile gives a copy that is not consistent."""
        plan = self.plan
        src, tgt = plan.source.conninfo(step.database), plan.target.conninfo(step.database)
        psql = shlex.quote(str(plan.tools.bindir / 'psql'))
        pw_src, pw_tgt = (f'PGPASSWORD="${var}" ' if var else '' for var in (
            self.password_var(Step('x', '', 'source', ['psql'])), self.password_var(Step('x', '', 'target', ['psql']))))
        return '\n'.join([
            f'cp {shlex.quote(step.input)} {shlex.quote(step.output)}',
            'n=0',
            'while IFS= read -r t; do',
            f'  ( {pw_src}{psql} -X -q -c "COPY $t TO STDOUT" --dbname={shlex.quote(src)} | '
            f'{pw_tgt}PGOPTIONS=\'-c synchronous_commit=off\' {psql} -X -q -v ON_ERROR_STOP=1 -c "COPY $t FROM STDIN" '
            f'--dbname={shlex.quote(tgt)} ) &',
            f'  n=$((n + 1)); [ $((n % {plan.opts.jobs})) -eq 0 ] && wait',
            f'done < {shlex.quote(self._tables_file(step))}',
            'wait'])

    def check_log(self, path):
        return f"grep -E 'ERROR|FATAL' {shlex.quote(path)} || echo {shlex.quote(f'No errors in {path}')}"

    def version(self, program):
        return f'{shlex.quote(str(self.plan.tools.bindir / program))} --version'


class PowerShell(_Shell):
    quote = staticmethod(ps_quote)

    def preamble(self):
        # A password already set (SOURCE_PGPASSWORD / TARGET_PGPASSWORD, PGPASSWORD) or a pgpass file is used
        # as it is; a hidden prompt only in an interactive session (never under -NonInteractive).
        lines = ['$interactive = [Environment]::UserInteractive -and -not ([Environment]::GetCommandLineArgs() '
                 "-like '-NonI*')",
                 '$pgpass = if ($env:PGPASSFILE) { $env:PGPASSFILE } else { Join-Path $env:APPDATA '
                 "'postgresql\\pgpass.conf' }",
                 '$userPGPASSWORD = $env:PGPASSWORD  # given back when the script ends']
        for side in self.sides():
            ep, var = getattr(self.plan, side), PROMPT_VARS[side]
            lines.append(f'${var} = if ($env:{var}) {{ $env:{var} }} elseif ($env:PGPASSWORD) {{ $env:PGPASSWORD }} '
                         f'elseif ($interactive -and -not (Test-Path $pgpass)) {{ '
                         f'[System.Net.NetworkCredential]::new(\'\', (Read-Host -AsSecureString '
                         f'-Prompt {ps_quote(f"Password for {ep.user} on {ep.name}")})).Password }} else {{ \'\' }}')
        lines.append(f'New-Item -ItemType Directory -Force -Path {ps_quote(str(self.plan.workdir))} | Out-Null')
        return lines

    def _env(self, step):
        var = self.password_var(step)
        sets = [f'$env:PGPASSWORD = ${var}'] if var else []
        return sets + [f'$env:{k} = {ps_quote(v)}' for k, v in step.env.items()]

    def _one(self, step: Step):
        words = ['&'] + [ps_quote(a) for a in _stdout_as_option(step).argv]
        if step.stderr:
            words.append(f'{_redirect(step)} {ps_quote(step.stderr)}')
        cleanup = [f'Remove-Item Env:{k}' for k in step.env]
        if self.password_var(step):
            cleanup.append('$env:PGPASSWORD = $userPGPASSWORD')  # never remove a variable the user had set
        line = '; '.join(self._env(step) + [' '.join(words)] + ['$code = $LASTEXITCODE'] + cleanup)
        if step.stops_script:
            line += f"\nif ($code -ne 0) {{ Write-Error {ps_quote(f'{step.description} failed')}; exit $code }}"
        return line

    def command(self, step: Step):
        if not step.argv:
            return '# (done by run only, nothing to paste)'
        if step.pipe:  # PowerShell pipes text, not bytes: write the file, then restore from it
            return '\n'.join(self._one(s) for s in [step, *_from_file(step)])
        return self._one(step)

    def check_log(self, path):
        return (f"if (Select-String -Path {ps_quote(path)} -Pattern 'ERROR|FATAL') "
                f"{{ Select-String -Path {ps_quote(path)} -Pattern 'ERROR|FATAL' }} "
                f"else {{ 'No errors in {path.replace(chr(39), chr(39) * 2)}' }}")

    def version(self, program):
        return f'& {ps_quote(str(self.plan.tools.bindir / program))} --version'


class Cmd(_Shell):
    comment = 'REM'
    quote = staticmethod(cmd_quote)

    def preamble(self):
        lines = ['setlocal EnableDelayedExpansion']
        for side in self.sides():
            var = PROMPT_VARS[side]
            lines.append(f'REM Set {var} (or PGPASSWORD) to the password of {getattr(self.plan, side).user} first, '
                         'or keep it in pgpass.conf (cmd cannot read a hidden password).')
            lines.append(f'if not defined {var} if defined PGPASSWORD set "{var}=!PGPASSWORD!"')
        lines.append(f'if not exist {cmd_quote(str(self.plan.workdir))} mkdir {cmd_quote(str(self.plan.workdir))}')
        return lines

    def _one(self, step: Step):
        # !VAR! expands after parsing: a password with " & | ^ cannot break the line or run anything.
        var = self.password_var(step)
        sets = [f'set "PGPASSWORD=!{var}!"'] if var else []
        sets += [f'set "{k}={v}"' for k, v in step.env.items()]
        words = [cmd_quote(a) for a in _stdout_as_option(step).argv]
        if step.stderr:
            words.append(f'{_redirect(step)} {cmd_quote(step.stderr)}')
        unset = [f'set "{k}="' for k in step.env] + (['set "PGPASSWORD="'] if sets else [])
        check = [f'if errorlevel 1 (echo {cmd_quote(step.description + " failed")} & exit /b 1)'] \
            if step.stops_script else []
        # the check first: `set` clears errorlevel
        return '\n'.join(sets + [' '.join(words)] + check + unset)

    def command(self, step: Step):
        if not step.argv:
            return 'REM (done by run only, nothing to paste)'
        if step.pipe:
            return '\n'.join(self._one(s) for s in [step, *_from_file(step)])
        return self._one(step)

    def check_log(self, path):
        return f'findstr /R "ERROR FATAL" {cmd_quote(path)} || echo No errors in {cmd_quote(path)}'

    def version(self, program):
        return f'{cmd_quote(str(self.plan.tools.bindir / program))} --version'


SHELLS = {'bash': Bash, 'powershell': PowerShell, 'cmd': Cmd}


def _stdout_as_option(step: Step) -> Step:
    """PowerShell 5 re-encodes redirected native output as UTF-16: let pg_dump and psql write the file."""
    if not step.stdout:
        return step
    program = step.argv[0].rsplit('/', 1)[-1]
    option = {'pg_dump': '--file=', 'psql': '--output='}.get(program)
    if option is None:
        return step
    return Step(step.name, step.description, step.side, step.argv + [option + step.stdout], database=step.database,
                stderr=step.stderr, env=step.env)


def _redirect(step: Step) -> str:
    return '2>>' if step.stderr_append else '2>'


def _from_file(step: Step) -> list:
    """The consumer of a piped step, reading the file the producer wrote instead of a pipe (cleaned
    first when the pipe cleans it)."""
    restore, source = step.pipe, step.stdout
    steps = []
    if step.filter:
        cleaned = f'{source[:-4] if source.endswith(".sql") else source}.restore.sql'
        steps.append(Step('restore-clean', 'Leave Azure service objects out and set owners last', 'target',
                          action=clean_dump(source, cleaned), database=restore.database, stops_script=True))
        source = cleaned
    return steps + [replace(restore, argv=restore.argv + [f'--file={source}'])]


def render(plan, shell: str = 'bash') -> str:
    if shell != 'bash' and any(s.kind == 'copy' for s in plan.steps):
        raise ValueError('The stream method is rendered for bash only; use --method directory or plain for '
                         f'{shell}.')
    sh = SHELLS[shell](plan)
    c = sh.comment
    lines = [f'{c} {plan.mode} plan from az postgres dumprestore: method {plan.opts.method}, jobs {plan.opts.jobs}',
             f'{c} Check the utilities: each must be version {plan.tools_major_needed or plan.tools.major} or newer.']
    lines += [sh.version(p) for p in (CHECKED_PROGRAMS[:2] if plan.mode == 'dump' else CHECKED_PROGRAMS)]
    lines += sh.preamble()
    tuning = plan.tuning
    if tuning and tuning.changes:
        lines.append(f"{c} The target's parameters for the load (Microsoft's recommendations; put back at the end)")
        lines += [_plain_argv(sh, argv) for argv in tuning.set_commands()]
    for step in plan.steps:
        lines.append(f'{c} {step.description}')
        lines.append(sh.command(step))
        if step.logged:
            lines.append(sh.check_log((step.pipe or step).stderr))
    if tuning and tuning.changes:
        lines.append(f"{c} Put the target's parameters back as they were")
        lines += [_plain_argv(sh, argv) for argv in tuning.undo_commands()]
    return '\n'.join(lines) + '\n'


def _plain_argv(sh, argv) -> str:
    """An az command line: words as they are (PowerShell would read a quoted first word as a string)."""
    return ' '.join(a if re.fullmatch(r'[\w.,/-]+', a) else sh.quote(a) for a in argv)


def structured(plan) -> list:
    """Steps for pipelines that run them themselves: argv, the environment each needs, redirections."""
    out = []
    for step in plan.steps:
        item = step.as_dict()
        secret = {'PGPASSWORD': f'<{step.side} password>'} if step.needs_password else {}
        item['environment'] = {**step.env, **secret}
        out.append(item)
    return out
