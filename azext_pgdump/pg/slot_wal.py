"""The WAL an online run's replication slots keep on the source. A slot keeps every WAL segment from its
restart point on until the target confirms it applied them; a target that stops applying (stopped, unreachable,
blocked) makes that WAL grow without end, and on Flexible Server nothing caps it (`max_slot_wal_keep_size` is
-1) until the disk turns the server read-only. The run watches it and stops following before a limit."""
import threading
import time
from typing import Optional

import psycopg

from azext_pgdump.pg import catalog
from azext_pgdump.pg.process import human
from azext_pgdump.pg.settings import usable_bytes

CHECK_EVERY = 5.0   # seconds between two reads of the slots during a run


class SlotWalLimit(Exception):
    """A slot of the run keeps more WAL on the source than the limit: following stops, the slots are removed."""


def default_limit(storage_bytes: Optional[int], used_bytes: int) -> Optional[int]:
    """Half of what the source's disk has left before it turns read-only (a Flexible Server: 95 % used or less
    than 5 GiB free): room for the run's slots with as much again to spare. None when the disk is not known."""
    if not storage_bytes:
        return None
    return max(int((usable_bytes(storage_bytes) - used_bytes) / 2), 0)


def source_used_bytes(source) -> int:
    """What the source's disk holds now: its databases and its WAL (as far as the login may see them)."""
    with catalog.connect(source) as conn:
        return catalog.databases_bytes(conn) + (catalog.wal_bytes(conn) or 0)


def retained(conn, slots: dict) -> dict:
    """database -> the WAL its slot keeps on the source (bytes), for `slots` (database -> slot name). A slot
    that is gone keeps nothing."""
    rows = dict(conn.execute('SELECT slot_name, pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), '
                             'restart_lsn) FROM pg_catalog.pg_replication_slots WHERE slot_name = ANY(%s)',
                             (list(slots.values()),)).fetchall())
    return {db: int(rows.get(slot) or 0) for db, slot in slots.items()}


def over(kept: dict, limit: Optional[int]) -> Optional[str]:
    """Why following must stop, or None: the first database whose slot keeps more than `limit`."""
    for db, size in kept.items():
        if limit is not None and size > limit:
            return (f'{db}: its replication slot keeps {human(size)} of WAL on the source, more than the limit of '
                    f'{human(limit)} (--max-slot-wal): the target is not applying fast enough, or at all')
    return None


class Guard:
    """Read the slots at most every CHECK_EVERY seconds (the run's loop calls check() about once a second), on
    one connection kept open for it: the loop waits for the answer, and a new login each time costs more."""

    def __init__(self, source, limit: Optional[int]):
        self.source, self.limit, self.last, self.conn = source, limit, 0.0, None
        self.lock = threading.Lock()   # the loop and a step's thread may both ask

    def check(self, slots: dict) -> None:
        if self.limit is None or not slots or time.monotonic() - self.last < CHECK_EVERY:
            return
        with self.lock:
            self.last = time.monotonic()
            try:
                if self.conn is None or self.conn.closed:   # a database of the run: the login may connect there
                    self.conn = catalog.connect(self.source, next(iter(slots)))
                reason = over(retained(self.conn, slots), self.limit)
            except (catalog.ConnectError, psycopg.Error):   # unreachable a moment: the steps say it if it lasts
                self.close()
                return
        if reason:
            raise SlotWalLimit(reason)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
