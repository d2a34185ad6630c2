"""The one scheduler (pg/scheduler.py) and the graph the planner makes (plan.link): order, per-server budgets,
and that a failure stops every child. Real child processes; no server needed."""
import subprocess
import threading
import time

import pytest

from azext_pgdump.pg import children
from azext_pgdump.pg.scheduler import Scheduler
from azext_pgdump.pg.steps import Step, link


def step(database, name, side='source', argv=('pg_dump',), **kw):
    return Step(name, f'{name} {database}', side, list(argv), database=database, **kw)


class Clock:
    """Records when each step ran; each takes `seconds`."""

    def __init__(self, seconds=0.2):
        self.seconds, self.spans, self.lock, self.running, self.most = seconds, {}, threading.Lock(), 0, 0

    def __call__(self, s):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        start = time.monotonic()
        time.sleep(self.seconds)
        with self.lock:
            self.running -= 1
            self.spans[s.id] = (start, time.monotonic())


def test_link_chains_each_database_and_puts_target_work_after_the_roles():
    steps = link([step(None, 'roles-dump'), step(None, 'roles-restore', 'target', ('psql',)),
                  step('a', 'dump', argv=('pg_dump', '--jobs=4')), step('a', 'create', 'target', ('createdb',)),
                  step('a', 'restore', 'target', ('pg_restore', '--jobs=4')), step('b', 'dump'),
                  step('b', 'create', 'target', ('createdb',))], jobs=2)
    by_id = {s.id: s for s in steps}
    assert by_id['a/dump'].after == [] and by_id['b/dump'].after == []  # databases do not wait for each other
    assert by_id['a/create'].after == ['a/dump', 'roles-restore'] and by_id['a/restore'].after == ['a/create']
    assert by_id['b/create'].after == ['b/dump', 'roles-restore']
    assert by_id['a/dump'].uses == {'source': 4} and by_id['a/create'].uses == {'target': 1}


def test_steps_wait_for_what_they_come_after_and_for_connections():
    steps = link([step('a', 'dump', argv=('pg_dump', '--jobs=2')), step('a', 'restore', 'target', ('pg_restore',)),
                  step('b', 'dump', argv=('pg_dump', '--jobs=2')), step('b', 'restore', 'target', ('pg_restore',))],
                 jobs=2)
    clock = Clock()
    Scheduler(steps, {'source': 2, 'target': 2}, clock).run()
    span = clock.spans
    assert span['a/restore'][0] >= span['a/dump'][1] and span['b/restore'][0] >= span['b/dump'][1]
    # Each dump takes the whole source budget: they never overlap; a's restore overlaps b's dump.
    assert span['b/dump'][0] >= span['a/dump'][1]
    assert span['a/restore'][0] < span['b/dump'][1] and clock.most == 2


def test_small_steps_of_different_databases_run_at_once_and_done_steps_are_not_run_again():
    steps = link([step(d, 'dump') for d in 'abcd'], jobs=3)
    clock = Clock()
    Scheduler(steps, {'source': 3, 'target': 3}, clock, done={'d/dump'}).run()
    assert clock.most == 3 and set(clock.spans) == {'a/dump', 'b/dump', 'c/dump'}


def test_a_step_an_earlier_run_finished_is_passed_over_only_in_its_turn():
    """Resumed: `create` is not done again, but the listing after it must still wait for the dump before it
    (it reads the file the dump writes)."""
    steps = link([step('d', 'dump'), step('d', 'create', 'target'), step('d', 'restore-list', 'target')], jobs=2)
    clock = Clock()
    Scheduler(steps, {'source': 2, 'target': 2}, clock, done={'d/create'}).run()
    assert set(clock.spans) == {'d/dump', 'd/restore-list'}
    assert clock.spans['d/restore-list'][0] >= clock.spans['d/dump'][1]


def test_a_failing_step_stops_every_child_and_is_raised():
    started = threading.Event()
    procs = []

    def run(s):
        if s.id == 'a/dump':
            with children.started(['sleep', '60'], stdout=subprocess.DEVNULL) as proc:
                procs.append(proc)
                started.set()
                proc.wait()
        else:
            started.wait(10)
            raise RuntimeError('a bug')
    children.reset()
    begun = time.monotonic()
    with pytest.raises(RuntimeError, match='a bug'):
        Scheduler(link([step('a', 'dump'), step('b', 'dump')], jobs=2), {'source': 2}, run).run()
    assert procs[0].poll() is not None and time.monotonic() - begun < 15
    with pytest.raises(children.Stopped):  # nothing new starts while the run stops
        with children.started(['true']):
            pass
    children.reset()


def resume(method, tasks, todo=('db',)):
    from azext_pgdump.pg.planner import Resume
    return Resume([], [], list(todo), frozenset(todo), True, method, tasks)


def test_resume_keeps_a_finished_dump_and_a_stream_copy_whose_tables_exist():
    from azext_pgdump.pg.planner import resumed_steps
    assert resumed_steps(resume('directory', {'db/dump': {'status': 'done'}}), 'directory') == \
        (frozenset({'db/dump'}), {})
    assert resumed_steps(resume('directory', {'db/dump': {'status': 'running'}}), 'directory') == (frozenset(), {})
    stream = {'db/restore-pre': {'status': 'done'}, 'db/copy': {'status': 'running', 'tablesDone': ['public.a']}}
    skip, tables = resumed_steps(resume('stream', stream), 'stream')
    assert skip == {'db/drop', 'db/create', 'db/footprint', 'db/restore-schemas', 'db/restore-pre'} and \
        tables == {'db': {'public.a'}}
    # The last restore pass had begun: half of post-data is not built on; the database is made again.
    assert resumed_steps(resume('stream', dict(stream, **{'db/restore': {'status': 'running'}})), 'stream') == \
        (frozenset(), {})
    assert resumed_steps(resume('stream', stream), 'directory') == (frozenset(), {})  # another method: start over


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")   # the swallowing, on purpose
def test_a_signal_a_library_swallowed_still_stops_the_run():
    """Python swallows an exception raised in a __del__ (urllib3's clean-up, say): a Ctrl-C that landed there is
    raised again by the scheduler's loop instead of being lost."""
    import signal
    from azext_pgdump.pg import interrupts

    class Swallower:
        def __del__(self):
            signal.raise_signal(signal.SIGINT)   # the handler's KeyboardInterrupt is "ignored" here

    steps = [Step('a', 'a', 'source'), Step('b', 'b', 'source')]
    for i, s in enumerate(steps):
        s.id, s.after, s.uses = s.name, [steps[i - 1].id] if i else [], {}
    ran = []
    with interrupts.sigterm_as_exit():
        Swallower()   # made and collected at once, on the main thread
        with pytest.raises(KeyboardInterrupt):
            Scheduler(steps, {'source': 1}, lambda s: (time.sleep(0.3), ran.append(s.name))).run()
    assert 'b' not in ran
