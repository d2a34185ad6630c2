"""Execute plan steps: argv lists (never a shell), secrets only in the child's environment,
stderr into the step's errors log, and progress (elapsed time, bytes written) while it runs."""
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from azext_pgdump.pg import children
from azext_pgdump.pg.dumpclean import PlainFilter
from azext_pgdump.pg.steps import Step


# Dumps and role files hold data and password hashes: what the utilities write is private to the user.
PRIVATE = 0o077


@dataclass
class StepResult:
    returncode: int
    seconds: float
    bytes_written: int
    stderr_tail: str = ''
    pipe: Optional['StepResult'] = None   # the consumer's result, for a piped step
    left_out: Optional[list] = None       # what a piped step's clean-up left out (dumpclean)
    refreshed: Optional[list] = None      # the materialized views its script refreshes (dumpclean)


def size_of(path) -> int:
    if not path:
        return 0
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    if p.is_dir():
        return sum(f.stat().st_size for f in p.iterdir() if f.is_file())
    return 0


def human(n: float) -> str:
    for unit in ('B', 'kB', 'MB', 'GB'):
        if n < 1024:
            return f'{n:.0f} {unit}' if unit == 'B' else f'{n:.1f} {unit}'
        n /= 1024
    return f'{n:.1f} TB'


class Runner:
    def __init__(self, endpoints: dict, progress: Callable[[str], None], interval: float = 10.0):
        self.endpoints = endpoints     # side -> Endpoint, asked for its password as each child starts
        self.progress = progress
        self.interval = interval

    def _env(self, step: Step) -> dict:
        endpoint = self.endpoints.get(step.side)
        if endpoint is None:
            return {**os.environ, **step.env}
        options = ' '.join(o for o in (step.env.get('PGOPTIONS', ''), endpoint.session_options()) if o)
        return {**os.environ, **step.env, **({'PGOPTIONS': options} if options else {}), **endpoint.secret_env()}

    def run(self, step: Step) -> StepResult:
        if step.pipe:
            return self._run_pipe(step)
        env = self._env(step)
        started = time.monotonic()
        stdout = _open_private(step.stdout) if step.stdout else subprocess.DEVNULL
        stderr = _open_private(step.stderr, step.stderr_append) if step.stderr else subprocess.PIPE
        try:
            with children.started(step.argv, env=env, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
                                  umask=PRIVATE) as proc:
                captured = self._wait(proc, step, started)
        finally:
            for f in (stdout, stderr):
                if hasattr(f, 'close'):
                    f.close()
        tail = captured if not step.stderr else _tail(Path(step.stderr))
        return StepResult(proc.returncode, time.monotonic() - started, size_of(step.output), tail)

    def _run_pipe(self, step: Step) -> StepResult:
        """producer | tee file | consumer, copied here so that the file and the consumer get every byte."""
        consumer_step, started = step.pipe, time.monotonic()
        # The file is written unbuffered: a full disk then fails a write here (which names the file), not a
        # flush at close.
        with _open_private(step.stdout, raw=True) as tee, _open_private(step.stderr) as p_err, \
                _open_private(consumer_step.stderr) as c_err:
            with children.started(step.argv, env=self._env(step), stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=p_err, umask=PRIVATE) as producer, \
                    children.started(consumer_step.argv, env=self._env(consumer_step), stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, stderr=c_err, umask=PRIVATE) as consumer:
                cleaner = PlainFilter() if step.filter else None
                self._copy(producer.stdout, tee, consumer.stdin, step, started, cleaner)
                producer.wait()
                consumer.wait()
        seconds = time.monotonic() - started
        return StepResult(producer.returncode, seconds, size_of(step.stdout), _tail(Path(step.stderr)),
                          pipe=StepResult(consumer.returncode, seconds, 0, _tail(Path(consumer_step.stderr))),
                          left_out=cleaner.left_out if cleaner else None,
                          refreshed=cleaner.refreshed if cleaner else None)

    def _copy(self, source, tee, sink, step: Step, started: float, cleaner=None) -> None:
        """The file gets what the producer wrote; the consumer gets it through `cleaner`, if any."""
        written, last_report = 0, time.monotonic()
        while chunk := source.read1(1 << 20):
            try:
                _write_all(tee, chunk)
            except OSError as err:  # a full disk: say which file, and free what a partial dump holds
                tee.truncate(0)
                raise OSError(err.errno, err.strerror, step.stdout) from err
            sink = _send(sink, cleaner.feed(chunk) if cleaner else chunk)
            written += len(chunk)
            if time.monotonic() - last_report >= self.interval:
                last_report = time.monotonic()
                self.progress(f'  {step.description}: {last_report - started:.0f}s, {human(written)} streamed')
        if cleaner is not None:
            sink = _send(sink, cleaner.close())
        if sink is not None:
            try:
                sink.close()
            except BrokenPipeError:
                pass

    def _wait(self, proc, step: Step, started: float) -> str:
        if proc.stderr is not None:
            # Nothing to watch but the pipe: communicate() drains it so the child cannot block.
            return proc.communicate()[1].decode(errors='replace')[-2000:]
        while True:
            try:
                proc.wait(timeout=self.interval)
                return ''
            except subprocess.TimeoutExpired:
                self.progress(f'  {step.description}: {time.monotonic() - started:.0f}s'
                              + (f', {human(size_of(step.output))} written' if step.output else ''))


def _send(sink, data: bytes):
    """Write to the consumer; None once it has died (the file stays complete, its exit code tells)."""
    if sink is not None and data:
        try:
            sink.write(data)
        except BrokenPipeError:
            return None
    return sink


def _open_private(path, append: bool = False, raw: bool = False):
    return open(path, 'ab' if append else 'wb', buffering=0 if raw else -1,  # pylint: disable=consider-using-with
                opener=lambda p, flags: os.open(p, flags, 0o600))


def _write_all(raw_file, data: bytes) -> None:
    """An unbuffered write may take part of the data (a disk filling up): the rest, or the error, follows."""
    view = memoryview(data)
    while view:
        view = view[raw_file.write(view):]


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        return path.read_text(errors='replace')[-limit:]
    except OSError:
        return ''
