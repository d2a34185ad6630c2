"""CPU budgets for the benchmark's "three machines" profile: the source server, the target server and the
client each get a share of the cores through a cgroup-v1 `cpu` controller (needs root), the shape of a
client VM between two cloud servers."""
import os
from pathlib import Path

ROOT = Path("/sys/fs/cgroup/cpu")
PERIOD_US = 100_000


def available() -> bool:
    return os.geteuid() == 0 and (ROOT / "cgroup.procs").exists()


class CpuQuota:
    def __init__(self, name: str, cores: float):
        self.path = ROOT / f"azext-pgdump-bench-{name}"
        self.path.mkdir(exist_ok=True)
        (self.path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (self.path / "cpu.cfs_quota_us").write_text(str(int(cores * PERIOD_US)))
        self.cores = cores

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

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

    def wrap(self, argv: list) -> list:
        """argv run inside this group (with every process it starts)."""
        return ["sh", "-c", f'echo $$ > "{self.path}/cgroup.procs" && exec "$@"', "sh", *argv]

    def remove(self) -> None:
        for pid in (self.path / "cgroup.procs").read_text().split():
            try:
                (ROOT / "cgroup.procs").write_text(pid)
            except OSError:
                pass
        try:
            self.path.rmdir()
        except OSError:
            pass
