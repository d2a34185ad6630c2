"""CPU budgets for the benchmark's "three machines" profile: the source server, the target server and the
client each get a share of the cores through a cgroup-v1 `cpu` controller (needs root), the shape of a
client VM between two cloud servers."""
import os
import threading
from pathlib import Path

ROOT = Path("/sys/fs/cgroup/cpu")
ACCT = Path("/sys/fs/cgroup/cpuacct")   # a hierarchy of its own here: CPU time used, per group
PERIOD_US = 100_000


def available() -> bool:
    return os.geteuid() == 0 and (ROOT / "cgroup.procs").exists()


class CpuQuota:
    def __init__(self, name: str, cores: float):
        # The pid in the name: two benchmarks on one machine must not share, nor remove, each other's groups.
        self.path = ROOT / f"azext-pgdump-bench-{name}-{os.getpid()}"
        self.path.mkdir(exist_ok=True)
        (self.path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (self.path / "cpu.cfs_quota_us").write_text(str(int(cores * PERIOD_US)))
        self.cores = cores
        self.acct = ACCT / self.path.name if (ACCT / "cgroup.procs").exists() else None
        if self.acct is not None:
            self.acct.mkdir(exist_ok=True)

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))
        if self.acct is not None:
            (self.acct / "cgroup.procs").write_text(str(pid))

    def add_thread(self, tid: int) -> None:
        """One thread only (cgroup v1 places threads one by one): what it forks from now on is born in the group,
        while the process's other threads stay where they are."""
        (self.path / "tasks").write_text(str(tid))
        if self.acct is not None:
            (self.acct / "tasks").write_text(str(tid))

    @staticmethod
    def leave_thread() -> None:
        """Put the calling thread back in the root groups (cgroup v1 places threads one by one): the benchmark's
        own sampling must not spend the client's budget."""
        for root in (ROOT, ACCT):
            if (root / "tasks").exists():
                (root / "tasks").write_text(str(threading.get_native_id()))

    def seconds(self) -> tuple:
        """(CPU seconds used, seconds its processes waited for the quota) so far: which side bounds a run."""
        used = int((self.acct / "cpuacct.usage").read_text()) / 1e9 if self.acct is not None else float("nan")
        stat = dict(line.split() for line in (self.path / "cpu.stat").read_text().splitlines())
        return used, int(stat["throttled_time"]) / 1e9

    def add_server(self, datadir: Path) -> None:
        """The postmaster and every process it has forked; backends forked later inherit the group."""
        postmaster = int((datadir / "postmaster.pid").read_text().split()[0])
        self.add(postmaster)
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    stat = (proc / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
                    self.add(int(proc.name))

    def remove(self) -> None:
        for root, path in ((ROOT, self.path), (ACCT, self.acct)):
            if path is None:
                continue
            for pid in (path / "cgroup.procs").read_text().split():
                try:
                    (root / "cgroup.procs").write_text(pid)
                except OSError:
                    pass
            try:
                path.rmdir()
            except OSError:
                pass
