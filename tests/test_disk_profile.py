"""The Azure-like disk of tests/infra (PgServer(disk="azure")): durability on as on Flexible, and a write cap
that really holds for what the server writes, measured on the device itself, not taken on trust."""
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.infra import diskquota
from tests.infra.certs import make_certs
from tests.infra.pgserver import flexible_server

WHY_NOT = diskquota.available()
pytestmark = pytest.mark.skipif(bool(WHY_NOT), reason=f"capped disk unavailable: {WHY_NOT}")

CAP = diskquota.P10_WRITE_BPS


@pytest.fixture(scope="module")
def capped(tmp_path_factory):
    with ExitStack() as stack:
        server = flexible_server("diskcap", 18, make_certs(tmp_path_factory.mktemp("certs")), disk="azure")
        server.start()
        stack.callback(server.stop)
        yield server


def test_durability_is_on_as_on_flexible(capped):
    settings = dict(capped.execute("SELECT name, setting FROM pg_settings WHERE name IN ('fsync', "
                                   "'full_page_writes', 'synchronous_commit', 'checkpoint_timeout', 'max_wal_size')"))
    assert settings == {"fsync": "on", "full_page_writes": "on", "synchronous_commit": "on",
                        "checkpoint_timeout": "600", "max_wal_size": "12288"}


def test_every_server_process_is_in_the_capped_group(capped):
    capped.execute("SELECT 1")  # a backend forked after start, too
    postmaster = capped.postmaster_pid()
    children = {int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _parent(p) == postmaster}
    in_group = capped.azure_disk.cap.pids()
    # A backend that ended meanwhile (its client gone) left the group at exit but may linger in /proc as a zombie
    # until the postmaster reaps it: only processes still running after the group was read must be in it.
    running = {pid for pid in children if _running(Path("/proc", str(pid)))}
    assert running and {postmaster, *running} <= in_group


def _stat(proc: Path) -> list:
    try:
        return (proc / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _parent(proc: Path) -> int:
    fields = _stat(proc)
    return int(fields[1]) if len(fields) > 1 else -1


def _running(proc: Path) -> bool:
    fields = _stat(proc)
    return bool(fields) and fields[0] not in ("Z", "X")


def test_the_write_cap_holds_for_a_bulk_load_and_checkpoint(capped):
    """About 500 MB reach the disk (heap, WAL with full pages, checkpoint): at the cap that is 5 s or more. The
    device's own counter, sampled every 0.25 s, never runs faster than the cap (20 % slack for the throttle's
    time slices), and almost all of it was submitted by the server's processes, so the cap saw it."""
    disk = capped.azure_disk
    samples, stop = [], threading.Event()

    def sample():
        while not stop.wait(0.25):
            samples.append((time.monotonic(), disk.counters()))

    before, started = disk.counters(), time.monotonic()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        capped.execute("CREATE TABLE bulk AS SELECT g AS id, repeat(md5(g::text), 6) AS pad "
                       "FROM generate_series(1, 1200000) g")
        capped.execute("CHECKPOINT")
    finally:
        stop.set()
        sampler.join()
    after, seconds = disk.counters(), time.monotonic() - started
    written = after["device"]["bytes"] - before["device"]["bytes"]
    escaped = diskquota.escaped(before, after)
    peak = max(_rate(samples[i - 8], samples[i]) for i in range(8, len(samples))) if len(samples) > 8 else 0
    print(f"\n{written / 2**20:.0f} MiB in {seconds:.1f}s = {written / seconds / 2**20:.0f} MiB/s (cap "
          f"{CAP / 2**20:.0f}); peak 2 s window {peak / 2**20:.0f} MiB/s; around the group "
          f"{escaped / 2**20:.1f} MiB; device flushes {after['device']['flushes'] - before['device']['flushes']}")
    assert written >= 3 * CAP, "too little written to show a cap"
    assert written / seconds <= 1.2 * CAP
    assert peak <= 1.2 * CAP
    assert escaped <= 0.1 * written


def _rate(a, b) -> float:
    return (b[1]["device"]["bytes"] - a[1]["device"]["bytes"]) / (b[0] - a[0])


def test_the_iops_cap_holds_for_small_commits(capped):
    """One row per transaction: each commit waits for its WAL write and fdatasync, one small write each, so the
    500 IOPS budget, not the bandwidth, bounds the commit rate, as on a P10."""
    disk = capped.azure_disk
    before, started = disk.counters(), time.monotonic()
    with capped.connect() as conn:
        conn.execute("CREATE TABLE commits (id int)")
        for i in range(1500):
            conn.execute("INSERT INTO commits VALUES (%s)", (i,))
    after, seconds = disk.counters(), time.monotonic() - started
    writes = after["device"]["writes"] - before["device"]["writes"]
    print(f"\n1500 commits in {seconds:.1f}s: {writes} device writes = {writes / seconds:.0f}/s (cap "
          f"{diskquota.P10_WRITE_IOPS}); group {after['group']['writes'] - before['group']['writes']}; "
          f"flushes {after['device']['flushes'] - before['device']['flushes']}")
    assert writes >= 1500, "a commit that did not reach the disk"
    assert writes / seconds <= 1.2 * diskquota.P10_WRITE_IOPS
