"""One scheduler for every method's plan: a step starts when the steps it comes after have ended and its
connections fit in each server's budget, so one database's dump runs while another's restore does, and
the roles are dumped while the first schema is. Steps run on threads; the utilities they start are child
processes (pg/children.py), so the threads mostly wait.

A step's failure is the caller's to record (the database is marked failed and its later steps do nothing);
an exception out of a step (a bug) or a Ctrl-C stops every child and is raised here."""
import threading
import time
from typing import Callable, Iterable

from azext_pgdump.pg import children, interrupts


class Scheduler:
    def __init__(self, steps: list, limits: dict, run_step: Callable, done: Iterable = (), stop_wait: float = 15.0,
                 watch: Callable = lambda: None):
        self.steps = steps
        self.watch = watch                # called about once a second; what it raises stops the run like a Ctrl-C
        self.limits = limits              # side -> connections the run may hold there at once (--jobs)
        self.run_step = run_step
        self.ended = set()                # ids: finished now, or (see done) passed over in their turn
        # ids an earlier run finished (--resume): not done again, but passed over only in their turn, once what
        # they come after has ended (a resumed listing must not read a dump that is still being written).
        self.done = set(done)
        self.running: dict = {}           # id -> thread
        self.interrupted: list = []       # ids of the steps under way when the run was stopped
        self.stop_wait = stop_wait
        self._cond = threading.Condition()
        self._free = dict(limits)
        self._errors: list = []

    def run(self) -> None:
        waiting = list(self.steps)
        try:
            with self._cond:
                while True:
                    if self._errors:
                        raise self._errors[0]
                    for step in self._startable(waiting):
                        waiting.remove(step)
                        self._start(step)
                    if not (waiting or self.running):
                        return
                    interrupts.raise_if_pending()   # a Ctrl-C a library swallowed still stops the run
                    self._cond.release()   # the watch may wait on a server: steps end meanwhile
                    try:
                        self.watch()
                    finally:
                        self._cond.acquire()
                    self._cond.wait(timeout=1.0)
        except BaseException:
            self._stop()
            raise

    def running_ids(self) -> list:
        """In plan order: what was under way (for the manifest of an interrupted run)."""
        with self._cond:
            return [s.id for s in self.steps if s.id in self.running]

    def _need(self, step) -> dict:
        # A step may ask for more than the budget (pg_restore -j 8 with --jobs 2 cannot happen, but a
        # hand-made plan could): it then runs alone on that server.
        return {side: min(n, self.limits.get(side, n)) for side, n in step.uses.items()}

    def _startable(self, waiting: list) -> list:
        out = []
        for step in list(waiting):  # plan order: roles and the first databases first (and `after` is earlier)
            need = self._need(step)
            if step.id in self.done and all(a in self.ended for a in step.after):
                waiting.remove(step)
                self.ended.add(step.id)
            elif all(a in self.ended for a in step.after) and all(self._free.get(s, n) >= n for s, n in need.items()):
                for side, n in need.items():
                    self._free[side] = self._free.get(side, n) - n
                out.append(step)
        return out

    def _start(self, step) -> None:
        thread = threading.Thread(target=self._body, args=(step,), name=step.id, daemon=True)
        self.running[step.id] = thread
        thread.start()

    def _body(self, step) -> None:
        try:
            self.run_step(step)
        except children.Stopped:
            pass
        except BaseException as err:  # pylint: disable=broad-except  # raised in the main thread
            if not children.stopping():
                self._errors.append(err)
        finally:
            with self._cond:
                for side, n in self._need(step).items():
                    self._free[side] += n
                self.ended.add(step.id)
                self.running.pop(step.id, None)
                self._cond.notify_all()

    def _stop(self) -> None:
        """Stop every child, then give the threads a bounded time to notice and record where they were."""
        self.interrupted = self.running_ids()
        children.stop_all()
        deadline = time.monotonic() + self.stop_wait
        for thread in list(self.running.values()):
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
