"""How a run says how it goes, on stderr. Lines: each step as it starts and ends, each table as it is
copied (what a pipeline's log keeps). On a terminal, also a status line the front end draws (az's progress
bar): the share of the copy done, tables done / running / waiting, and the time left."""
import threading
from typing import Callable, Optional


class Progress:
    def __init__(self, line: Callable[[str], None], bar=None):
        self._line, self.bar = line, bar   # bar: update(message, done, total) and clear(), or None
        self._lock = threading.Lock()

    def __call__(self, message: str) -> None:
        with self._lock:
            if self.bar is not None:
                self.bar.clear()
            self._line(message)

    @property
    def live(self) -> bool:
        """Whether anyone sees a status line (a terminal): only then is it worth polling the servers for it."""
        return self.bar is not None

    def status(self, message: str, done: float, total: float) -> None:
        if self.bar is not None:
            with self._lock:
                self.bar.update(message, min(done, total), total)

    def end(self) -> None:
        if self.bar is not None:
            with self._lock:
                self.bar.clear()


def status_text(database: str, done: int, running: int, waiting: int, left: Optional[float]) -> str:
    eta = f', about {left:.0f}s left' if left is not None else ''
    return f'{database}: {done} tables copied, {running} copying, {waiting} waiting{eta} '
