"""--tune-target's decisions (pg/settings.py), table-driven: which of Microsoft's recommendations a server gets,
capped how, skipped why, and what giving a change back does."""
import pytest

from azext_pgdump.pg import settings
from azext_pgdump.pg.settings import GIB, Parameter

FLEXIBLE = {  # a Flexible Server's defaults and allowed values, as ARM reports them (units: MB, s, kB)
    'max_wal_size': Parameter('max_wal_size', '2048', '2-65536', unit='MB'),
    'checkpoint_timeout': Parameter('checkpoint_timeout', '600', '30-86400', unit='s'),
    'maintenance_work_mem': Parameter('maintenance_work_mem', '216064', '1024-2097151', unit='kB'),
    'max_parallel_maintenance_workers': Parameter('max_parallel_maintenance_workers', '2', '0-64'),
    'work_mem': Parameter('work_mem', '4096', '4096-2097151', unit='kB'),
    'autovacuum': Parameter('autovacuum', 'on', 'on,off'),
    'wal_compression': Parameter('wal_compression', 'off', 'off,pglz,lz4,zstd,on'),
}


def tuned(overrides=None, **kw):
    params = dict(FLEXIBLE, **(overrides or {}))
    return settings.plan_tuning({k: v for k, v in params.items() if v is not None}, 'flex', 'rg', **kw)


def test_every_recommendation_on_a_default_server():
    t = tuned()   # without pg_stat_statements, pgaudit and Query Store: nothing to say of them
    assert [(c.name, c.was, c.value) for c in t.changes] == [
        ('max_wal_size', '2048', '65536'), ('checkpoint_timeout', '600', '3600'),
        ('maintenance_work_mem', '216064', '2097151'), ('max_parallel_maintenance_workers', '2', '4'),
        ('work_mem', '4096', '32768'), ('autovacuum', 'on', 'off'), ('wal_compression', 'off', 'on')]
    assert t.skipped == []
    assert t.undo_commands()[0] == ['az', 'postgres', 'flexible-server', 'parameter', 'set', '--resource-group', 'rg',
                                    '--server-name', 'flex', '--name', 'max_wal_size', '--value', '2048']


@pytest.mark.parametrize('override, skipped, reason', [
    ({'autovacuum': Parameter('autovacuum', 'on', 'on,off', read_only=True)}, 'autovacuum', 'read-only'),
    ({'work_mem': Parameter('work_mem', '4096', dynamic=False)}, 'work_mem', 'needs a restart'),
    ({'work_mem': Parameter('work_mem', '4096', pending_restart=True)}, 'work_mem', 'restart is pending'),
    ({'max_wal_size': Parameter('max_wal_size', '1024', '2-8192')}, 'max_wal_size', 'not among its allowed'),
    ({'wal_compression': Parameter('wal_compression', 'off', 'off,pglz')}, 'wal_compression', 'not among'),
    ({'wal_compression': None}, 'wal_compression', 'no such parameter'),
])
def test_what_is_left_alone_and_why(override, skipped, reason):
    t = tuned(override)
    assert skipped not in [c.name for c in t.changes]
    assert [s['name'] for s in t.skipped] == [skipped] and reason in t.skipped[0]['reason']


@pytest.mark.parametrize('name, value', [('max_wal_size', '65536'), ('max_wal_size', '100000'),
                                         ('work_mem', '65536'), ('autovacuum', 'OFF')])
def test_a_value_already_as_good_is_not_touched(name, value):
    t = tuned({name: Parameter(name, value)})
    assert name not in [c.name for c in t.changes] and t.skipped == []


@pytest.mark.parametrize('storage_gib, used_gib, incoming_gib, cap_mb', [
    (32, 1, 2, int((27 - 3) * GIB * 0.5) >> 20),          # small disk: 5 GiB free is the floor
    (1024, 10, 100, int((1024 * 0.95 - 110) * GIB * 0.5) >> 20),   # large disk: 95 % is the ceiling
    (32, 20, 10, 0),                                        # nothing to spare
])
def test_wal_capped_by_free_disk(storage_gib, used_gib, incoming_gib, cap_mb):
    assert settings.wal_cap_mb(storage_gib * GIB, used_gib * GIB, incoming_gib * GIB) == cap_mb


def test_capped_changes_say_why_and_never_lower_a_value():
    t = tuned(disk=(32 * GIB, 1 * GIB, 2 * GIB), shared_buffers_kb=512 * 1024, jobs=4)
    by_name = {c.name: c for c in t.changes}
    assert by_name['max_wal_size'].value == str(settings.wal_cap_mb(32 * GIB, GIB, 2 * GIB))
    assert 'disk' in by_name['max_wal_size'].note
    assert by_name['maintenance_work_mem'].value == str(512 * 1024 * 4 // 2 // 4) and 'memory' in \
        by_name['maintenance_work_mem'].note
    full = tuned(disk=(32 * GIB, 20 * GIB, 10 * GIB))   # the cap is below what the server has: left as it is
    assert 'max_wal_size' not in [c.name for c in full.changes]


@pytest.mark.parametrize('allowed, value, ok', [
    ('', 'x', True), ('2-65536', '65536', True), ('2-65536', '65537', False), ('-1-2147483647', '-1', True),
    ('on,off', 'OFF', True), ('0-0,100-1000', '50', False), ('0-0,100-1000', '100', True), ('on,off', '1', False)])
def test_allowed_values(allowed, value, ok):
    assert settings.allows(allowed, value) is ok


@pytest.mark.parametrize('name, current, verdict', [
    ('max_wal_size', '65536', 'restore'), ('max_wal_size', '2048', 'done'), ('max_wal_size', '4096', 'left'),
    ('max_wal_size', None, 'left'), ('wal_compression', 'pglz', 'restore'), ('wal_compression', 'lz4', 'left'),
    ('wal_compression', 'OFF', 'done')])
def test_giving_back_reads_the_value_first(name, current, verdict):
    change = {'name': name, 'value': 'on' if name == 'wal_compression' else '65536',
              'was': 'off' if name == 'wal_compression' else '2048'}
    assert settings.given_back(change, current) == verdict


class FakeArm:
    """The applier's two calls, over a dict (ARM is exercised for real in test_tuning.py)."""
    def __init__(self, values, fail=False):
        self.values, self.fail, self.writes = values, fail, []

    def read(self, name):
        if self.fail:
            raise settings.SettingError(f'could not read {name}: 403')
        return self.values.get(name)

    def write(self, name, value):
        self.writes.append((name, value))
        self.values[name] = value


@pytest.mark.parametrize('now, status, writes', [('off', 'restored', [('autovacuum', 'on')]),
                                                 ('on', 'restored', []), ('OFF', 'restored', [('autovacuum', 'on')])])
def test_give_back(now, status, writes):
    arm = FakeArm({'autovacuum': now})
    out = settings.give_back(arm, {'name': 'autovacuum', 'value': 'off', 'was': 'on'})
    assert out == {'status': status} and arm.writes == writes


def test_give_back_leaves_what_someone_else_set_and_reports_a_refusal():
    arm = FakeArm({'work_mem': '8192'})
    change = {'name': 'work_mem', 'value': '32768', 'was': '4096'}
    out = settings.give_back(arm, change)
    assert out == {'status': 'left', 'now': '8192'} and not arm.writes
    assert 'someone changed it' in settings.outcome_line(dict(change, **out))
    refused = settings.give_back(FakeArm({}, fail=True), change)
    assert refused['status'] == 'restore-failed' and '403' in refused['error']


def test_statement_tracking_audit_and_query_store_are_quiet_during_the_load():
    t = tuned({'pg_stat_statements.track': Parameter('pg_stat_statements.track', 'top', 'top,all,none'),
               'pgaudit.log': Parameter('pgaudit.log', 'ddl,role', ''),
               'pg_qs.query_capture_mode': Parameter('pg_qs.query_capture_mode', 'none', 'top,all,none')})
    quiet = {c.name: (c.was, c.value) for c in t.changes if '.' in c.name}
    assert quiet == {'pg_stat_statements.track': ('top', 'none'), 'pgaudit.log': ('ddl,role', 'none')}
