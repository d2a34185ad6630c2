"""A disk like Azure's Premium SSD for one test server: its own small ext4 filesystem on a loop device, and
a cgroup-v1 `blkio` group whose write budget on that device is a P10's (root only).

Why a loop device, although / here is a block device: the server's writes, journal and flushes then stay
on a device of its own, so a throttled fsync never holds another program's I/O on the shared disk (an
ext4 journal is shared by everything on one filesystem), and the device's counters (/sys/dev/block/M:m/stat)
count this server's I/O only, which is what shows whether the cap holds.

What the cap catches (measured, see tests/test_disk_profile.py): blk-throttle charges a write to the cgroup
of the task that submits it. Writes submitted by the server's own processes are capped: O_DIRECT, the
writeback an fsync/fdatasync starts, and sync_file_range() (PostgreSQL's *_flush_after settings). Buffered
pages written back later by the kernel's flusher threads belong to no group and are NOT capped; so the
server runs with every *_flush_after on (see pgserver.AZURE_DISK_SETTINGS) and `escaped()` reports what
went around the group anyway (the ext4 journal, temporary files, the flusher)."""
import os
import subprocess
import threading
from contextlib import contextmanager
from pathlib import Path

BLKIO = Path("/sys/fs/cgroup/blkio")
# Azure Premium SSD P10 (128 GiB): 500 IOPS, 100 MB/s (Azure's disk pages count MB/s in MiB).
P10_WRITE_BPS = 100 * 1024 * 1024
P10_WRITE_IOPS = 500


def available() -> str:
    """'' when a capped disk can be made here, else why not."""
    if os.geteuid() != 0:
        return "needs root (loop device, mount, cgroup)"
    if not (BLKIO / "blkio.throttle.write_bps_device").exists():
        return "no cgroup-v1 blkio controller with throttling at /sys/fs/cgroup/blkio"
    if not Path("/dev/loop-control").exists():
        return "no loop devices (/dev/loop-control)"
    return ""


def block_device(path: Path) -> str:
    """'major:minor' of the block device holding `path`, or '' when its filesystem has none (tmpfs, overlay):
    a blkio throttle can only name a block device."""
    dev = os.stat(path).st_dev
    number = f"{os.major(dev)}:{os.minor(dev)}"
    return number if Path(f"/sys/dev/block/{number}").exists() else ""


def device_counters(device: str) -> dict:
    """What the device itself did so far (Documentation/block/stat.rst): writes, bytes written, flushes."""
    fields = [int(v) for v in Path(f"/sys/dev/block/{device}/stat").read_text().split()]
    return {"writes": fields[4], "bytes": fields[6] * 512, "flushes": fields[15] if len(fields) > 15 else 0}


def _run(argv, timeout=120) -> str:
    return subprocess.run(argv, check=True, timeout=timeout, capture_output=True, text=True).stdout.strip()


class LoopDisk:
    """A sparse file as a block device with an ext4 filesystem, mounted at `mountpoint`; close() undoes it all."""

    def __init__(self, image: Path, mountpoint: Path, size_gib: int = 16):
        self.image, self.mountpoint, self.loop = image, mountpoint, ""
        try:
            with open(image, "wb") as f:
                f.truncate(size_gib << 30)  # sparse: only what the server writes takes room on the host
            self.loop = _run(["losetup", "--find", "--show", str(image)])
            # Inode tables and journal written now (fast: the discarded loop device reads as zeros), not by
            # ext4's lazy-init thread later, whose writes would go around the cap while we measure.
            _run(["mkfs.ext4", "-q", "-F", "-i", "262144", "-J", "size=64",
                  "-E", "lazy_itable_init=0,lazy_journal_init=0", self.loop], timeout=300)
            mountpoint.mkdir(parents=True, exist_ok=True)
            _run(["mount", "-o", "noatime", self.loop, str(mountpoint)])
            self.device = block_device(mountpoint)
            if not self.device:
                raise RuntimeError(f"{mountpoint} is not on {self.loop} after mount")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        # Each step only if it happened; a busy unmount (a server still running) raises rather than leave a
        # loop device whose file is gone.
        if os.path.ismount(self.mountpoint):
            _run(["umount", str(self.mountpoint)])
        if self.loop:
            _run(["losetup", "-d", self.loop])
            self.loop = ""
        self.image.unlink(missing_ok=True)


class WriteCap:
    """A blkio group whose writes to `device` are capped at `bps` bytes and `iops` requests per second."""

    def __init__(self, name: str, device: str, bps: int = P10_WRITE_BPS, iops: int = P10_WRITE_IOPS):
        self.path, self.device, self.bps, self.iops = BLKIO / f"azext-pgdump-disk-{name}", device, bps, iops
        self.path.mkdir(exist_ok=True)
        try:
            (self.path / "blkio.throttle.write_bps_device").write_text(f"{device} {bps}")
            (self.path / "blkio.throttle.write_iops_device").write_text(f"{device} {iops}")
        except BaseException:
            self.remove()
            raise

    @contextmanager
    def inside(self):
        """The calling thread in the group for the block: what it starts (pg_ctl, then the postmaster and every
        process the postmaster forks) inherits the group. cgroup v1 moves threads one by one, so the other
        threads of this process stay where they are."""
        tid = str(threading.get_native_id())
        (self.path / "tasks").write_text(tid)
        try:
            yield
        finally:
            (BLKIO / "tasks").write_text(tid)

    def pids(self) -> set:
        return {int(p) for p in (self.path / "cgroup.procs").read_text().split()}

    def written(self) -> dict:
        """Writes the group submitted to the device so far (bytes, requests): what the cap saw."""
        def write_line(name):
            for line in (self.path / name).read_text().splitlines():
                parts = line.split()
                if len(parts) == 3 and parts[0] == self.device and parts[1] == "Write":
                    return int(parts[2])
            return 0
        return {"bytes": write_line("blkio.throttle.io_service_bytes"),
                "writes": write_line("blkio.throttle.io_serviced")}

    def remove(self) -> None:
        """Processes back to the root group, then the group itself (rmdir fails while a task is in it)."""
        if not self.path.exists():
            return
        for pid in (self.path / "cgroup.procs").read_text().split():
            try:
                (BLKIO / "cgroup.procs").write_text(pid)
            except OSError:
                pass  # exited meanwhile
        self.path.rmdir()


class AzureDisk:
    """A loop disk mounted at `base / 'disk'` whose writes are capped for the processes started `inside()`."""

    def __init__(self, base: Path, name: str, size_gib: int = 16):
        self.disk = LoopDisk(base / "disk.img", base / "disk", size_gib)
        try:
            self.cap = WriteCap(name, self.disk.device)
        except BaseException:
            self.disk.close()
            raise
        self.mountpoint = self.disk.mountpoint

    def inside(self):
        return self.cap.inside()

    def counters(self) -> dict:
        """The device's and the group's write counters at once: {'device': {...}, 'group': {...}}."""
        return {"device": device_counters(self.disk.device), "group": self.cap.written()}

    def close(self) -> None:
        try:
            self.cap.remove()
        finally:
            self.disk.close()


def escaped(before: dict, after: dict) -> int:
    """Bytes that reached the device between two `counters()` without passing the group's cap."""
    return (after["device"]["bytes"] - before["device"]["bytes"]) - (after["group"]["bytes"] - before["group"]["bytes"])
