"""Execute plan steps: argv lists (never a shell), secrets only in the child's environment,
stderr into the step's errors log, and progress (elapsed time, bytes written) while it runs."""
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from azext_pgdump.pg.plan import Step


@dataclass
class StepResult:
    returncode: int
    seconds: float
    bytes_written: int
    stderr_tail: str = ''


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
    def __init__(self, secret_env: dict, progress: Callable[[str], None], interval: float = 10.0):
        self.secret_env = secret_env   # side -> {'PGPASSWORD': ...}
        self.progress = progress
        self.interval = interval

    def run(self, step: Step) -> StepResult:
        env = {**os.environ, **step.env, **self.secret_env.get(step.side, {})}
        started = time.monotonic()
        stdout = open(step.stdout, 'wb') if step.stdout else subprocess.DEVNULL  # pylint: disable=consider-using-with
        stderr = open(step.stderr, 'wb') if step.stderr else subprocess.PIPE  # pylint: disable=consider-using-with
        try:
            with subprocess.Popen(step.argv, env=env, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL) \
                    as proc:
                try:
                    captured = self._wait(proc, step, started)
                except BaseException:
                    # Ctrl-C, SIGTERM or a bug: never leave a pg_dump running behind us.
                    proc.terminate()
                    try:
                        proc.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                    raise
        finally:
            for f in (stdout, stderr):
                if hasattr(f, 'close'):
                    f.close()
        tail = captured if not step.stderr else _tail(Path(step.stderr))
        return StepResult(proc.returncode, time.monotonic() - started, size_of(step.output), tail)

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


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        return path.read_text(errors='replace')[-limit:]
    except OSError:
        return ''
