"""What a finished step means for its database (or the roles): pure functions from the step (its kind and
how its end is judged, see steps.py), its exit and its errors log's verdict (errorlog.ErrorReport) to the
fields the result records. pg/state.py applies them; nothing here touches a file or a server."""
from dataclasses import dataclass, field
from typing import Optional

from azext_pgdump.pg.errorlog import ErrorReport
from azext_pgdump.pg.dumpclean import refreshed_views
from azext_pgdump.pg.state import FAILED

# Where a log-judged step keeps its verdict, and the name its failure is reported under ('restore' for every
# pass of a restore: the passes share one errors log).
LOG_KEYS = {'properties': 'propertiesErrors'}


@dataclass(frozen=True)
class Ended:
    """How a program step ended: what record() judges."""
    exit: int
    seconds: float = 0.0
    written: int = 0                      # bytes of its output (of its input, for a restore)
    error: str = ''                       # the tail of its stderr, secrets masked
    log: Optional[ErrorReport] = None     # its errors log, read (steps judged by their log)
    earlier_exits: tuple = ()             # exits of the passes before it that share its log ('later')
    pipe_exit: int = 0                    # a pipe's consumer: its exit, its stderr tail
    pipe_error: str = ''
    left_out: tuple = field(default_factory=tuple)   # what a pipe's clean-up left out (dumpclean.reason)
    refreshed: tuple = ()                            # the materialized views a pipe's script refreshes


def record(step, ended: Ended) -> dict:
    """The fields of the database's record (or the roles') after `step` ended as `ended`."""
    if step.database is None:
        return _roles(step, ended)
    out = {'duration': round(ended.seconds, 2)}
    if step.writes_dump:
        out.update(dumpBytes=ended.written, dumpPath=step.output)
    if step.kind == 'pipe':
        out.update(_pipe(step, ended))
    elif step.judge == 'log':
        if step.input:  # what it restored, unless a dump step of this run said so already
            out['defaults'] = {'dumpPath': step.input, 'dumpBytes': ended.written}
        out.update(_judged(step, ended.log, max([ended.exit, *ended.earlier_exits]), ended.error))
    elif step.judge == 'exit' and ended.exit != 0:
        out.update(status=FAILED, failedStep=step.name, error=ended.error or f'exit code {ended.exit}')
    if step.writes_dump and out.get('status') == FAILED and 'failedLog' not in out:
        out['failedLog'] = step.stderr
    return out


def _pipe(step, ended: Ended) -> dict:
    """A dump piped into a restore: the consumer's log judges the restore; the producer's exit the dump."""
    out = _judged(step.pipe, ended.log, max(ended.pipe_exit, 0), ended.pipe_error)
    if ended.left_out:
        out['leftOut'] = list(ended.left_out)
    out.update(refreshed_views(ended.refreshed))
    if ended.exit != 0 and out.get('status') != FAILED:
        out.update(status=FAILED, failedStep='dump', error=ended.error)
    return out


def _judged(step, log: Optional[ErrorReport], exit_code: int, error: str, located: bool = True) -> dict:
    """Real errors, or a non-zero exit nothing harmless explains, fail the step (see errorlog). `located`: the
    failure names its step and log (a database's; the roles' record has its own errorsLog)."""
    log = log or ErrorReport()
    key = LOG_KEYS.get(step.name, 'errors')
    out = {key: log.as_dict(), f'{key}Log': step.stderr}
    if log.failed(exit_code):
        out.update(status=FAILED,
                   error=log.first_problem() or error or f'exit code {exit_code}, and nothing in its log says why')
        if located:
            out.update(failedStep='properties' if key != 'errors' else 'restore', failedLog=step.stderr)
    return out


def _roles(step, ended: Ended) -> dict:
    if step.judge == 'log':
        return _judged(step, ended.log, ended.exit, ended.error, located=False)
    if ended.exit != 0:
        return {'status': FAILED, 'failedStep': step.name, 'error': ended.error}
    return {'rawFile': step.output} if step.writes_dump else {}


def line(step, fields: dict) -> str:
    """What the progress line says of a finished step: the judge's verdict, not the exit code alone
    (pg_restore exits 1 on errors that are all harmless)."""
    if fields.get('status') == FAILED:
        return f"FAILED: {(fields.get('error') or 'see the log').strip().splitlines()[0][:300]}"
    for key in ('errors', *LOG_KEYS.values()):
        harmless = fields.get(key, {}).get('harmless', 0)
        if harmless:
            return f"done, {harmless} harmless error{'s' if harmless > 1 else ''} (log: {fields.get(key + 'Log')})"
    return 'done'
