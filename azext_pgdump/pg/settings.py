"""The target's server parameters for a load: what Microsoft recommends for a restore into Flexible Server, what
of it this server allows, and what each change puts back afterwards. Pure decisions on plain data: arm/ reads
the parameters and writes them, pg/run.py applies the changes before the first step and gives them back at
every exit, pg/state.py keeps the values they had (for `--resume` and `cleanup` after a kill -9)."""
import re
from dataclasses import asdict, dataclass, field
from typing import Optional

# Microsoft, "Best practices for pg_dump and pg_restore" (Flexible Server), for the duration of a restore; in the
# units ARM reports them in (MB, s, kB, kB).
RECOMMENDED = (
    ('max_wal_size', '65536'),                   # fewer checkpoints: each one writes every page it touched again
    ('checkpoint_timeout', '3600'),
    ('maintenance_work_mem', '2097151'),         # index builds sort in memory
    ('max_parallel_maintenance_workers', '4'),
    ('work_mem', '32768'),
    ('autovacuum', 'off'),                       # no vacuum of tables still being loaded; ANALYZE follows the load
    ('wal_compression', 'on'),                   # full-page images after each checkpoint, smaller
    # Quiet during the load: statements tracked, audited and captured by Query Store cost every one of them.
    ('pg_stat_statements.track', 'none'),
    ('pgaudit.log', 'none'),
    ('pg_qs.query_capture_mode', 'none'),
)
# Only servers that load them have these: their absence is nothing to report.
OPTIONAL = {'pg_stat_statements.track', 'pgaudit.log', 'pg_qs.query_capture_mode'}
NUMERIC_UP = {'max_wal_size', 'checkpoint_timeout', 'maintenance_work_mem', 'max_parallel_maintenance_workers',
              'work_mem'}   # a value already higher than the recommendation is the owner's choice: kept
GIB = 1 << 30
# A Flexible Server turns read-only at 95 % of its storage used or under 5 GiB free; WAL never triggers autogrow.
READ_ONLY_SHARE, READ_ONLY_FREE = 0.95, 5 * GIB
# max_wal_size is a soft limit (WAL can pass it while a checkpoint runs): let it have half of what is left.
WAL_SHARE = 0.5


class SettingError(Exception):
    """ARM refused to read or change a parameter (the message says which and why)."""


@dataclass(frozen=True)
class Parameter:
    """A server parameter as ARM describes it (Configurations_Get)."""
    name: str
    value: str
    allowed: str = ''                # allowedValues: "2-65536", "on,off", "0-0,100-1000"
    dynamic: bool = True             # isDynamicConfig: applies without a restart
    read_only: bool = False
    pending_restart: bool = False    # isConfigPendingRestart
    unit: str = ''


@dataclass(frozen=True)
class Change:
    name: str
    value: str          # what the load runs with
    was: str            # what it is put back to
    unit: str = ''
    note: str = ''      # why the value differs from the recommendation (a cap)


@dataclass
class Tuning:
    """The changes a run makes to its target's parameters, and the recommendations it leaves out and why."""
    server: str                      # the target's name and resource group, for the commands shown
    resource_group: str
    changes: list = field(default_factory=list)
    skipped: list = field(default_factory=list)    # {'name', 'reason'}

    def as_dict(self) -> dict:
        return {'server': self.server, 'resourceGroup': self.resource_group,
                'changes': [asdict(c) for c in self.changes], 'skipped': list(self.skipped)}

    def set_commands(self) -> list:
        return [self.command(c.name, c.value) for c in self.changes]

    def undo_commands(self) -> list:
        return [self.command(c.name, c.was) for c in self.changes]

    def command(self, name: str, value: str) -> list:
        return ['az', 'postgres', 'flexible-server', 'parameter', 'set', '--resource-group', self.resource_group,
                '--server-name', self.server, '--name', name, '--value', value]


def allows(allowed: str, value: str) -> bool:
    """Whether `value` is among ARM's allowedValues (ranges and words, comma-separated); no list allows all."""
    if not allowed:
        return True
    for item in allowed.split(','):
        item = item.strip()
        span = re.fullmatch(r'(-?\d+)-(-?\d+)', item)
        if span and re.fullmatch(r'-?\d+', value):
            if int(span.group(1)) <= int(value) <= int(span.group(2)):
                return True
        elif item.lower() == value.lower():
            return True
    return False


def usable_bytes(storage_bytes: int) -> float:
    """What a Flexible Server's disk may hold before the server turns read-only."""
    return min(storage_bytes * READ_ONLY_SHARE, storage_bytes - READ_ONLY_FREE)


def wal_cap_mb(storage_bytes: int, used_bytes: int, incoming_bytes: int) -> int:
    """The max_wal_size (MB) that keeps the disk clear of read-only once the load's data is in."""
    left = usable_bytes(storage_bytes) - used_bytes - incoming_bytes
    return max(int(left * WAL_SHARE) >> 20, 0)


def memory_cap_kb(shared_buffers_kb: Optional[int], jobs: int) -> Optional[int]:
    """maintenance_work_mem for `jobs` index builds at once within half the server's memory. Flexible sizes
    shared_buffers at a quarter of the memory, so memory is four times it; None when it is unknown."""
    if not shared_buffers_kb:
        return None
    return int(shared_buffers_kb * 4 / 2 / max(jobs, 1))


def plan_tuning(params: dict, server: str, resource_group: str, disk: Optional[tuple] = None,
                shared_buffers_kb: Optional[int] = None, jobs: int = 2) -> Tuning:
    """`params`: name -> Parameter (absent: ARM does not have it). `disk`: (storage, used, incoming) bytes."""
    tuning = Tuning(server, resource_group)
    caps = {}
    if disk:
        caps['max_wal_size'] = (wal_cap_mb(*disk), 'capped to half the disk space left after the load')
    memory = memory_cap_kb(shared_buffers_kb, jobs)
    if memory is not None:
        caps['maintenance_work_mem'] = (memory, f'capped so that {jobs} index builds fit in half the memory')
    for name, wanted in RECOMMENDED:
        _decide(tuning, params.get(name), name, wanted, caps.get(name))
    return tuning


def _decide(tuning: Tuning, param: Optional[Parameter], name: str, wanted: str, cap) -> None:
    def skip(reason):
        tuning.skipped.append({'name': name, 'reason': reason})
    if param is None:
        return None if name in OPTIONAL else skip('the server has no such parameter')
    if param.read_only:
        return skip('read-only on this server')
    if not param.dynamic or param.pending_restart:
        return skip('changing it needs a restart' if not param.dynamic else 'a restart is pending for it')
    note = ''
    if cap is not None and name in NUMERIC_UP and int(wanted) > cap[0]:
        wanted, note = str(cap[0]), cap[1]
    if name in NUMERIC_UP and _number(param.value) is not None and _number(param.value) >= int(wanted):
        return None   # already as high: nothing to change, nothing to give back
    if name not in NUMERIC_UP and param.value.lower() == wanted.lower():
        return None
    if not allows(param.allowed, wanted):
        return skip(f'{wanted} is not among its allowed values ({param.allowed})')
    tuning.changes.append(Change(name, wanted, param.value, param.unit, note))
    return None


def _number(text: str) -> Optional[int]:
    return int(text) if re.fullmatch(r'-?\d+', text or '') else None


# Values a server reports under another name than the one set: PostgreSQL 15+ reads wal_compression "on" as pglz.
ALIASES = {'on': 'pglz', 'true': 'on', 'false': 'off'}


def given_back(change: dict, current: Optional[str]) -> str:
    """What giving a change back should do, from the value the parameter has now: 'restore' (it holds what the run
    set), 'done' (it holds what it had before: given back already) or 'left' (someone else changed it meanwhile)."""
    if current is None:
        return 'left'
    if _same(change['name'], current, change['value']):
        return 'restore'
    return 'done' if _same(change['name'], current, change['was']) else 'left'


def _same(name: str, a: str, b: str) -> bool:
    a, b = a.strip().lower(), b.strip().lower()
    if a == b:
        return True
    return name == 'wal_compression' and ALIASES.get(a, a) == ALIASES.get(b, b)


def give_back(applier, change: dict) -> dict:
    """Put one parameter back through `applier` (read(name), write(name, value)); what became of it, for the
    state: {'status': restored|left|restore-failed, 'now': the value found when left, 'error': why it failed}."""
    try:
        current = applier.read(change['name'])
        verdict = given_back(change, current)
        if verdict == 'restore':
            applier.write(change['name'], change['was'])
        return {'status': 'left', 'now': current} if verdict == 'left' else {'status': 'restored'}
    except SettingError as err:
        return {'status': 'restore-failed', 'error': str(err)}


def give_back_all(applier, changes: list, record, say) -> list:
    """Give back each change, `record(name, outcome)` before the next (a kill then repeats only the rest), and say
    what became of it. Returns the changes with their outcomes."""
    out = []
    for change in changes:
        outcome = give_back(applier, change)
        record(change['name'], outcome)
        out.append(dict(change, **outcome))
        say(f'  {outcome_line(out[-1])}')
    return out


def outcome_line(change: dict) -> str:
    """What became of a change, for the progress lines."""
    name, status = change['name'], change['status']
    if status == 'restored':
        return f"{name} is {change['was']} again"
    if status == 'left':
        return (f"{name} is {change.get('now')}, not the {change['value']} this run set: someone changed it during "
                'the run, and it is left as they set it')
    return f"{name} could not be put back to {change['was']} ({change.get('error')})"
