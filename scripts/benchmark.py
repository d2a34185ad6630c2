"""Side-by-side timing of a whole database move: what users would type by hand (Microsoft's guide),
pgcopydb, and `az postgres dumprestore run` with each method, between two real local servers (a
PostgreSQL 11 source and a Flexible-shaped 18 target, TLS, non-superuser admin). One invocation runs
every approach in alternating order, N rounds, and prints medians and ratios to the guide's directory
method typed by hand with -Z0, connections opened, peak memory of each approach's processes, and
checks after every run that the target holds every row. Absolute seconds on a shared machine mean
little; quote the ratios.

    python scripts/benchmark.py [--shape pgbench|realistic] [--scale 10] [--repeat 3] [--jobs 2]
                                [--profile shared|three] [--only WORD ...] [--detail]

--profile three gives the source server 0.5 core, the target 1 and the client 0.5 (cgroup `cpu`
controller, root only): a client VM between two cloud servers. --shape realistic: a dominant large
table with three indexes, a wide text/jsonb table, a partitioned table and 200 small tables."""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts import cpuquota  # noqa: E402
from tests.infra.pgbin import bindir  # noqa: E402
from tests.infra.world import RESOURCE_GROUP, start_world  # noqa: E402
from tests.migration_helpers import table_counts, write_pgpass  # noqa: E402

DB = "benchdb"
TICKS = os.sysconf("SC_CLK_TCK")


def conninfo(pg, dbname):
    return f"host={pg.host} port={pg.port} user={pg.admin} dbname={dbname} sslmode=require"


def sh(argv, env, ok=(0,), **kw):
    code = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, timeout=3600, **kw).returncode
    if code not in ok:
        raise subprocess.CalledProcessError(code, argv)


def createdb(ctx):
    sh([str(ctx.bin / "createdb"), f"--maintenance-db={conninfo(ctx.tgt, 'postgres')}", DB], ctx.env)


def by_hand_pipe(ctx):
    """One pg_dump | psql pipe: the guide's single-file method without the file."""
    createdb(ctx)
    with open(ctx.work / "errors.log", "w") as log:
        dump = subprocess.Popen([str(ctx.bin / "pg_dump"), "-d", conninfo(ctx.src, DB)], env=ctx.env,
                                stdout=subprocess.PIPE)
        sh([str(ctx.bin / "psql"), "-q", "-d", conninfo(ctx.tgt, DB)], ctx.env, stdin=dump.stdout, stderr=log)
        dump.stdout.close()
        if dump.wait() != 0:
            raise RuntimeError("pg_dump failed")


def by_hand_directory(z0):
    def run(ctx):
        """Microsoft's guide, multiple cores: pg_dump -Fd -j N [-Z0], createdb, pg_restore -j N."""
        jobs = str(ctx.jobs)
        sh([str(ctx.bin / "pg_dump"), "-Fd", "-j", jobs, *(["-Z0"] if z0 else []), "-f", str(ctx.work / "dir"),
            "-d", conninfo(ctx.src, DB)], ctx.env)
        createdb(ctx)
        # pg_restore exits 1 on the errors a Single Server source brings (ALTER SCHEMA public OWNER TO
        # azure_superuser): the guide's user reads errors.log and goes on.
        sh([str(ctx.bin / "pg_restore"), "-j", jobs, "-d", conninfo(ctx.tgt, DB), str(ctx.work / "dir")], ctx.env,
           ok=(0, 1), stderr=open(ctx.work / "errors.log", "w"))
    return run


def pgcopydb(ctx):
    """pgcopydb clone (Debian's package), tables and indexes in parallel, no roles."""
    createdb(ctx)
    sh(["pgcopydb", "clone", "--no-owner", "--no-acl", "--skip-extensions", "--dir", str(ctx.work / "pgcopydb"),
        "--table-jobs", str(ctx.jobs), "--index-jobs", str(ctx.jobs),
        "--source", conninfo(ctx.src, DB), "--target", conninfo(ctx.tgt, DB)],
       dict(ctx.env, PATH=f"{ctx.bin}:{ctx.env['PATH']}"), stderr=open(ctx.work / "pgcopydb.log", "w"))


def ours(method):
    def run(ctx):
        # The source by host, like the commands typed by hand (the test gateway of a Single Server is a
        # Python relay in this process: it would cost our runs CPU that a real gateway does not).
        tgt = ctx.tgt
        proc = ctx.world.az.run(
            "postgres", "dumprestore", "run", "-g", RESOURCE_GROUP, "--databases", DB, "--no-roles",
            "--source-host", ctx.src.host, "--source-port", str(ctx.src.port), "--source-admin-user", ctx.src.admin,
            "--target-server", "flex1", "--target-host", tgt.host, "--target-port", str(tgt.port),
            "--method", method, "--jobs", str(ctx.jobs), "--pg-bin-dir", str(ctx.bin), "--work-dir",
            str(ctx.work / "wd"), "--only-show-errors", "-o", "json", env=ctx.env, check=False, timeout=3600)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr)
        ctx.result = json.loads(proc.stdout)
    run.__doc__ = f"az postgres dumprestore run --method {method} (roles off, ANALYZE included)"
    return run


def load(ctx, shape, scale):
    ctx.src.execute(f"CREATE DATABASE {DB} OWNER {ctx.src.admin}")
    if shape == "pgbench":
        sh([str(ctx.bin / "pgbench"), "-i", "-q", "-s", str(scale), "--foreign-keys", conninfo(ctx.src, DB)],
           ctx.env, stderr=subprocess.DEVNULL)
        return
    with ctx.src.connect(DB, superuser=False) as conn:
        conn.execute(f"""
CREATE TABLE orders (id bigint PRIMARY KEY, customer int NOT NULL, amount numeric(12,2), status text,
                     created timestamptz NOT NULL, note text);
INSERT INTO orders SELECT g, g % 50000, (g % 997) * 1.5, (ARRAY['new','paid','shipped'])[1 + g % 3],
       TIMESTAMPTZ '2024-01-01' + g * INTERVAL '7 seconds', 'order note ' || md5(g::text)
FROM generate_series(1, {scale * 60000}) g;
CREATE INDEX orders_customer ON orders (customer);
CREATE INDEX orders_created ON orders (created);
CREATE INDEX orders_status_created ON orders (status, created);
CREATE TABLE documents (id int PRIMARY KEY, title text, body text, meta jsonb);
INSERT INTO documents SELECT g, 'doc ' || g, repeat(md5(g::text), 60),
       jsonb_build_object('n', g, 'tags', jsonb_build_array('a', 'b', g % 10))
FROM generate_series(1, {scale * 2000}) g;
CREATE TABLE events (id bigint, at date NOT NULL, kind text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE events_q1 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2025-04-01');
CREATE TABLE events_q2 PARTITION OF events FOR VALUES FROM ('2025-04-01') TO ('2025-07-01');
CREATE TABLE events_q3 PARTITION OF events FOR VALUES FROM ('2025-07-01') TO ('2025-10-01');
CREATE TABLE events_q4 PARTITION OF events FOR VALUES FROM ('2025-10-01') TO ('2026-01-01');
INSERT INTO events SELECT g, DATE '2025-01-01' + (g % 365), 'kind ' || (g % 13)
FROM generate_series(1, {scale * 20000}) g;
""")
        for i in range(200):
            conn.execute(f"CREATE TABLE small_{i:03} (id int PRIMARY KEY, label text); "
                         f"INSERT INTO small_{i:03} SELECT g, 'row ' || g FROM generate_series(1, 100) g")


class Sampler:
    """Peak resident memory of this process's descendants (summed), sampled every 50 ms, and the CPU seconds each
    program among them used (as last seen: a process's final 50 ms may be missed)."""

    def __init__(self):
        self.peak, self._stop = 0, threading.Event()
        self._cpu = {}  # pid -> (program, CPU seconds)
        self.at_peak = {}  # program -> resident bytes when the sum peaked
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        if cpuquota.available():
            cpuquota.CpuQuota.leave_thread()  # the three-machine profile: this thread is not the client's work
        me = os.getpid()
        while not self._stop.wait(0.05):
            parents, rss, cpu = {}, {}, {}
            for proc in Path("/proc").iterdir():
                if not proc.name.isdigit():
                    continue
                try:
                    head, tail = (proc / "stat").read_text().rsplit(")", 1)
                except OSError:
                    continue
                fields, pid = tail.split(), int(proc.name)
                parents[pid] = int(fields[1])
                rss[pid] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
                cpu[pid] = (head.split("(", 1)[1], (int(fields[11]) + int(fields[12])) / TICKS)
            total, mine = 0, {}
            for pid in rss:
                p = parents.get(pid)
                while p and p != me and p in parents:
                    p = parents[p]
                if p == me:
                    total += rss[pid]
                    mine[cpu[pid][0]] = mine.get(cpu[pid][0], 0) + rss[pid]
                    self._cpu[pid] = cpu[pid]
            if total > self.peak:
                self.peak, self.at_peak = total, mine

    def cpu_by_program(self) -> dict:
        out = {}
        for program, seconds in self._cpu.values():
            out[program] = out.get(program, 0.0) + seconds
        return out


def connections(*servers) -> int:
    """Logins the servers have accepted so far (log_connections is on)."""
    return sum(pg.logfile.read_text(errors="replace").count("connection authorized") for pg in servers)


class Ctx:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=["pgbench", "realistic"], default="pgbench")
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=min(os.cpu_count() or 2, 8))
    parser.add_argument("--profile", choices=["shared", "three"], default="shared")
    parser.add_argument("--detail", action="store_true",
                        help="after every run: CPU seconds per client program, and our runs' step durations")
    parser.add_argument("--only", nargs="*", default=[],
                        help="run only the approaches whose name contains one of these words (the first always runs)")
    args = parser.parse_args()
    contenders = [("by hand, directory -Z0 (-Fd -j N -Z0)", by_hand_directory(True)),
                  ("by hand, directory (-Fd -j N)", by_hand_directory(False)),
                  ("by hand, one pg_dump | psql pipe", by_hand_pipe),
                  ("dumprestore run --method plain", ours("plain")),
                  ("dumprestore run --method directory", ours("directory")),
                  ("dumprestore run --method stream", ours("stream"))]
    if shutil.which("pgcopydb"):
        contenders.append(("pgcopydb clone", pgcopydb))
    else:
        print("pgcopydb not installed (apt-get install -y pgcopydb): left out", file=sys.stderr)
    if args.only:
        contenders = contenders[:1] + [c for c in contenders[1:] if any(w in c[0] for w in args.only)]
    if args.profile == "three" and not cpuquota.available():
        sys.exit("--profile three needs root and the cgroup-v1 cpu controller at /sys/fs/cgroup/cpu")
    with ExitStack() as stack:
        world = start_world(stack)
        src, tgt = world.single.pg, world.flexible.pg
        work_root = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        pgpass = write_pgpass(work_root / "pgpass", [
            (src.host, src.port, src.admin, src.admin_password), (tgt.host, tgt.port, tgt.admin, tgt.admin_password)])
        ctx = Ctx(world=world, src=src, tgt=tgt, bin=bindir(18), jobs=args.jobs,
                  env=dict(world.az.env, PGPASSFILE=str(pgpass)))
        for pg in (src, tgt):
            pg.execute("ALTER SYSTEM SET log_connections = on")
            pg.execute("SELECT pg_reload_conf()")
        print(f"Loading {args.shape} scale {args.scale} into PostgreSQL {src.major}...", file=sys.stderr)
        load(ctx, args.shape, args.scale)
        if args.profile == "three":
            quotas = {"source": cpuquota.CpuQuota("source", 0.5), "target": cpuquota.CpuQuota("target", 1.0),
                      "client": cpuquota.CpuQuota("client", 0.5)}
            for q in quotas.values():
                stack.callback(q.remove)
            quotas["source"].add_server(src.datadir)
            quotas["target"].add_server(tgt.datadir)
            quotas["client"].add(os.getpid())  # every command below is our child: it runs in the client's budget
        expected = table_counts(src, DB)
        size = src.execute("SELECT pg_database_size(%s)", (DB,))[0][0]
        figures = {name: {"seconds": [], "memory": [], "connections": [], "cpu": []} for name, _ in contenders}
        if args.profile != "three":
            quotas = {}
        for round_no in range(args.repeat):
            order = contenders if round_no % 2 == 0 else contenders[::-1]  # alternating order
            for name, contender in order:
                tgt.drop_database(DB)
                ctx.work = work_root / f"{round_no}-{contender.__name__}"
                ctx.work.mkdir()
                before = connections(src, tgt)
                cpu_before = {side: q.seconds() for side, q in quotas.items()}
                with Sampler() as sampler:
                    started = time.monotonic()
                    contender(ctx)
                    figures[name]["seconds"].append(time.monotonic() - started)
                figures[name]["memory"].append(sampler.peak)
                if args.detail:
                    print_detail(name, sampler, ctx.__dict__.pop("result", None))
                figures[name]["cpu"].append({side: tuple(a - b for a, b in zip(q.seconds(), cpu_before[side]))
                                             for side, q in quotas.items()})
                figures[name]["connections"].append(connections(src, tgt) - before)
                assert table_counts(tgt, DB) == expected, f"{name} did not copy everything"
                shutil.rmtree(ctx.work, ignore_errors=True)
                print(f"  round {round_no + 1}: {name}: {figures[name]['seconds'][-1]:.1f}s", file=sys.stderr)
    base = statistics.median(figures[contenders[0][0]]["seconds"])
    print(f"\n{args.shape} scale {args.scale} ({size / 1048576:.0f} MB), {args.jobs} jobs, median of {args.repeat}, "
          f"PostgreSQL {src.major} -> {tgt.major}, TLS, profile {args.profile}"
          + (" (source 0.5 core, target 1, client 0.5)" if args.profile == "three" else ""))
    print(f"{'approach':40} {'median s':>9} {'time vs -Z0 by hand':>20} {'connections':>12} {'peak MB':>8}")
    for name, _ in contenders:
        f = figures[name]
        med = statistics.median(f["seconds"])
        print(f"{name:40} {med:9.1f} {med / base:19.2f}x {statistics.median(f['connections']):12.0f} "
              f"{max(f['memory']) / 1048576:8.0f}")
    if args.profile == "three":
        print_cpu(figures, [name for name, _ in contenders])
    print("All runs: the target held every row of every table afterwards.")


def print_detail(name, sampler, result):
    """Where one run's time and memory went: the client's programs by CPU seconds and by resident memory at the
    peak, and for our runs each step's seconds."""
    top = sorted(sampler.cpu_by_program().items(), key=lambda kv: -kv[1])[:6]
    print(f"    {name}: client CPU " + ", ".join(f"{p} {s:.1f}s" for p, s in top), file=sys.stderr)
    print(f"    {name}: at the memory peak " + ", ".join(
        f"{p} {b / 1048576:.0f} MB" for p, b in sorted(sampler.at_peak.items(), key=lambda kv: -kv[1])),
        file=sys.stderr)
    for db in (result or {}).get("databases", []):
        steps = ", ".join(f"{k} {v:.1f}s" for k, v in db.get("durations", {}).items())
        print(f"    {db['name']}: {steps}", file=sys.stderr)


def print_cpu(figures, names):
    """What bounds each approach: CPU seconds each side used, and how long its processes waited for their quota
    (a side that waits most of the run is the bottleneck)."""
    sides = ("source", "target", "client")
    print(f"\n{'CPU seconds used / throttled (median)':40} " + " ".join(f"{s:>16}" for s in sides))
    for name in names:
        runs = figures[name]["cpu"]
        cells = [f"{statistics.median(r[s][0] for r in runs):7.1f} / {statistics.median(r[s][1] for r in runs):6.1f}"
                 for s in sides]
        print(f"{name:40} " + " ".join(f"{c:>16}" for c in cells))


if __name__ == "__main__":
    main()
