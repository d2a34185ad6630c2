"""What a finished step means for its database: one row per step kind x exit x errors-log verdict, through the
pure functions of pg/record.py (no server, no file)."""
import pytest

from azext_pgdump.pg import record
from azext_pgdump.pg.errorlog import ErrorReport
from azext_pgdump.pg.record import Ended
from azext_pgdump.pg.steps import Action, Step

CLEAN = ErrorReport()
HARMLESS = ErrorReport(total=5, harmless=5, by_class={'unknown-parameter': 5})
REAL = ErrorReport(total=2, harmless=1, real=1, real_samples=['relation "t" already exists'])


def program(name, judge='exit', **kw):
    return Step(name, name, 'target', ['prog'], database='db', stderr='/wd/db.errors.log', judge=judge, **kw)


PIPE = Step('transfer', 'transfer', 'source', ['pg_dump'], database='db', output='/wd/db.sql',
            stderr='/wd/db.dump.log', writes_dump=True,
            pipe=Step('restore', 'restore', 'target', ['psql'], database='db', stderr='/wd/db.errors.log', judge='log'))

# (step, how it ended, status it records (None: unchanged), failedStep, what the progress line starts with)
ROWS = [
    (program('create'), Ended(exit=0), None, None, 'done'),
    (program('create'), Ended(exit=1, error='createdb: error: database exists'), 'failed', 'create', 'FAILED: createdb'),
    (program('dump', writes_dump=True, output='/wd/db.dir'), Ended(exit=1, error='pg_dump: error'), 'failed', 'dump',
     'FAILED'),
    (program('restore-schemas', judge='later'), Ended(exit=1, log=REAL), None, None, 'done'),  # judged later
    (program('restore', judge='log', input='/wd/db.dir'), Ended(exit=0, log=CLEAN), None, None, 'done'),
    # pg_restore exits 1 on errors it ignored: all harmless is a success, and the line says so
    (program('restore', judge='log', input='/wd/db.dir'), Ended(exit=1, log=HARMLESS), None, None,
     'done, 5 harmless errors'),
    # an earlier pass that shares the log exited 1 with nothing harmless to explain it
    (program('restore', judge='log', input='/wd/db.dir'), Ended(exit=0, log=CLEAN, earlier_exits=(1,)), 'failed',
     'restore', 'FAILED'),
    (program('restore', judge='log', input='/wd/db.dir'), Ended(exit=1, log=REAL), 'failed', 'restore',
     'FAILED: relation "t" already exists'),
    (program('properties', judge='log'), Ended(exit=0, log=CLEAN), None, None, 'done'),
    (program('properties', judge='log'), Ended(exit=1, log=CLEAN), 'failed', 'properties', 'FAILED: exit code 1'),
    (PIPE, Ended(exit=0, written=10, log=HARMLESS, pipe_exit=0), None, None, 'done, 5 harmless errors'),
    (PIPE, Ended(exit=0, log=REAL, pipe_exit=3), 'failed', 'restore', 'FAILED: relation'),
    (PIPE, Ended(exit=1, error='pg_dump: error: lost', log=CLEAN, pipe_exit=0), 'failed', 'dump', 'FAILED: pg_dump'),
]


@pytest.mark.parametrize('step,ended,status,failed_step,line', ROWS)
def test_each_kind_exit_and_verdict_records_what_it_means(step, ended, status, failed_step, line):
    fields = record.record(step, ended)
    assert fields.get('status') == status
    assert fields.get('failedStep') == failed_step
    assert record.line(step, fields).startswith(line), record.line(step, fields)
    if status == 'failed' and (step.writes_dump or step.judge == 'log' or step.kind == 'pipe'):
        assert fields['failedLog'], fields   # the log to read is named


def test_a_dump_records_what_it_wrote_and_a_restore_what_it_read_unless_said():
    dump = program('dump', writes_dump=True, output='/wd/db.dir')
    assert record.record(dump, Ended(exit=0, written=42)) == {'duration': 0.0, 'dumpBytes': 42, 'dumpPath': '/wd/db.dir'}
    restore = record.record(program('restore', judge='log', input='/wd/x.sql'), Ended(exit=0, written=7, log=CLEAN))
    assert restore['defaults'] == {'dumpPath': '/wd/x.sql', 'dumpBytes': 7}   # a dump step's figures win


def test_roles_steps_record_on_the_roles():
    raw = Step('roles-dump', 'd', 'source', ['pg_dumpall'], output='/wd/roles.raw.sql', writes_dump=True)
    assert record.record(raw, Ended(exit=0)) == {'rawFile': '/wd/roles.raw.sql'}
    assert record.record(raw, Ended(exit=1, error='no'))['status'] == 'failed'
    restore = Step('roles-restore', 'r', 'target', ['psql'], stderr='/wd/roles.errors.log', judge='log')
    assert 'status' not in record.record(restore, Ended(exit=0, log=HARMLESS))
    failed = record.record(restore, Ended(exit=0, log=REAL))
    assert failed['status'] == 'failed' and 'failedStep' not in failed and failed['error'].startswith('relation')


def test_an_action_is_data_and_renders_as_the_az_command_that_does_the_same():
    step = Step('roles-clean', 'c', 'target', action=Action('clean-roles', (('input', 'r.sql'), ('may-exist', True),
                                                                            ('output-file', None))))
    assert step.kind == 'action' and step.in_process and not step.needs_password
    assert step.argv == ['az', 'postgres', 'dumprestore', 'clean-roles', '--input=r.sql', '--may-exist']
    only_run = Step('footprint', 'f', 'target', action=Action('footprint', (('file', 'x'),), command=False))
    assert only_run.argv == [] and only_run.as_dict()['action'] == {'name': 'footprint', 'args': {'file': 'x'}}


def test_a_resume_drops_only_what_the_interrupted_run_made_owners_first():
    from azext_pgdump.pg import footprint
    before = {'pg_namespace': [2200], 'pg_class': [16400]}
    now = {'pg_class': {16400: ('table', 'public.users_own'), 16500: ('table', 'public.t'),
                        16501: ('index', 'public.t_pkey')},
           'pg_namespace': {2200: ('schema', 'public'), 16600: ('schema', 'app')},
           'pg_extension': {16700: ('extension', 'citext')},
           'pg_type': {16800: ('domain', 'public.d')},
           'pg_largeobject_metadata': {16900: ('large object', '16900')}}
    text = [s.as_string(None) for _, _, s in footprint.statements(before, now)]
    assert text == ['DROP EXTENSION IF EXISTS citext CASCADE', 'DROP SCHEMA IF EXISTS app CASCADE',
                    'DROP TABLE IF EXISTS public.t CASCADE',   # its index goes with it; the user's table stays
                    'DROP DOMAIN IF EXISTS public.d CASCADE', "SELECT pg_catalog.lo_unlink(16900)"]
