"""Side-by-side timing of a whole database move: what users would type by hand (Microsoft's guide),
pgcopydb, and `az postgres dumprestore run` with each method, between two real local servers (a
PostgreSQL 11 source and a Flexible-shaped 18 target, TLS, non-superuser admin). One invocation runs
every approach in alternating order, N rounds, and prints medians and ratios to the guide's directory
method typed by hand with -Z0, connections opened, peak memory of each approach's processes, and
checks after every run that the target holds every row. Absolute seconds on a shared machine mean
little; quote the ratios.

    python scripts/benchmark.py [--shape pgbench|realistic|large] [--scale 10] [--repeat 3] [--jobs 2]
                                [--profile shared|three|azure-disk] [--only WORD ...] [--detail]

--profile three gives the source server 0.5 core, the target 1 and the client 0.5 (cgroup `cpu`
controller, root only): a client VM between two cloud servers. --profile azure-disk: the same CPU budgets,
and the target on a disk like Flexible's P10 (fsync, full_page_writes and synchronous_commit on, Flexible's
checkpoint defaults, writes capped at 100 MiB/s and 500 IOPS: tests/infra/diskquota.py); it adds the
contenders with Microsoft's restore tuning (by hand, and `run --tune-target`) and prints what each run wrote
on the target's disk. --shape realistic: a dominant large table with three indexes, a wide text/jsonb table,
a partitioned table and 200 small tables. --shape large: one table holds about 75 % of the bytes."""
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
from tests.infra import diskquota  # noqa: E402
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
    """One pg_dump | psql pipe (the guide's single-file method without the file), then the ANALYZE the guide
    asks for after a restore (vacuumdb --analyze-only, one connection)."""
    createdb(ctx)
    with open(ctx.work / "errors.log", "w") as log:
        dump = subprocess.Popen([str(ctx.bin / "pg_dump"), "-d", conninfo(ctx.src, DB)], env=ctx.env,
                                stdout=subprocess.PIPE)
        sh([str(ctx.bin / "psql"), "-q", "-d", conninfo(ctx.tgt, DB)], ctx.env, stdin=dump.stdout, stderr=log)
        dump.stdout.close()
        if dump.wait() != 0:
            raise RuntimeError("pg_dump failed")
    # stderr to a log: as a non-superuser it warns once per shared catalog it may not analyze.
    sh([str(ctx.bin / "vacuumdb"), "--analyze-only", "-q", "-d", conninfo(ctx.tgt, DB)], ctx.env,
       stderr=open(ctx.work / "analyze.log", "w"))


# Microsoft's restore tuning ("Best practices for pg_dump and pg_restore", /work/shared/notes/azure-postgres.md),
# in ARM's units (MB, s, kB), which are pg_settings' own units for these parameters.
MICROSOFT_TUNING = {"max_wal_size": "65536", "checkpoint_timeout": "3600", "maintenance_work_mem": "2097151",
                    "max_parallel_maintenance_workers": "4", "work_mem": "32768", "autovacuum": "off",
                    "wal_compression": "on"}


def tuned_by_hand(contender, through_az):
    def run(ctx):
        """Microsoft's tuning set before the contender and put back after, inside the timing. through_az: the
        user's `az postgres flexible-server parameter set` per parameter, each way (the emulated ARM applies
        it; on Azure each is a long-running call of its own, slower than here). Else ALTER SYSTEM and one reload
        as the bootstrap superuser: the tuning at no cost, the hardest baseline."""
        was = dict(ctx.tgt.execute("SELECT name, setting FROM pg_settings WHERE name = ANY(%s)",
                                   (list(MICROSOFT_TUNING),)))
        set_parameters(ctx, MICROSOFT_TUNING, through_az)
        try:
            contender(ctx)
        finally:
            if through_az:
                set_parameters(ctx, was, through_az)  # what the user noted before
            else:
                for name in MICROSOFT_TUNING:
                    ctx.tgt.execute(f"ALTER SYSTEM RESET {name}")
                ctx.tgt.execute("SELECT pg_reload_conf()")
    run.__name__ = f"tuned_{'az' if through_az else 'sql'}_{contender.__name__}"
    return run


def set_parameters(ctx, values, through_az):
    for name, value in values.items():
        if through_az:
            ctx.world.az.run("postgres", "flexible-server", "parameter", "set", "-g", RESOURCE_GROUP, "-s", "flex1",
                             "-n", name, "-v", value, "-o", "none", env=ctx.env, timeout=600)
        else:
            ctx.tgt.execute(f"ALTER SYSTEM SET {name} = '{value}'")
    if not through_az:
        ctx.tgt.execute("SELECT pg_reload_conf()")


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
    run.__name__ = "by_hand_directory_z0" if z0 else "by_hand_directory"
    return run


def pgcopydb(ctx):
    """pgcopydb clone (Debian's package), tables and indexes in parallel, no roles."""
    createdb(ctx)
    sh(["pgcopydb", "clone", "--no-owner", "--no-acl", "--skip-extensions", "--dir", str(ctx.work / "pgcopydb"),
        "--table-jobs", str(ctx.jobs), "--index-jobs", str(ctx.jobs),
        "--source", conninfo(ctx.src, DB), "--target", conninfo(ctx.tgt, DB)],
       dict(ctx.env, PATH=f"{ctx.bin}:{ctx.env['PATH']}"), stderr=open(ctx.work / "pgcopydb.log", "w"))


def ours(method, tune=False):
    def run(ctx):
        # The source by host, like the commands typed by hand (the test gateway of a Single Server is a
        # Python relay in this process: it would cost our runs CPU that a real gateway does not).
        tgt = ctx.tgt
        proc = ctx.world.az.run(
            "postgres", "dumprestore", "run", "-g", RESOURCE_GROUP, "--databases", DB, "--no-roles",
            "--source-host", ctx.src.host, "--source-port", str(ctx.src.port), "--source-admin-user", ctx.src.admin,
            "--target-server", "flex1", "--target-host", tgt.host, "--target-port", str(tgt.port),
            "--method", method, "--jobs", str(ctx.jobs), "--pg-bin-dir", str(ctx.bin), "--work-dir",
            str(ctx.work / "wd"), *(["--tune-target"] if tune else []), "--only-show-errors", "-o", "json",
            env=ctx.env, check=False, timeout=3600)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr)
        ctx.result = json.loads(proc.stdout)
    run.__doc__ = f"az postgres dumprestore run --method {method} (roles off, ANALYZE included)"
    run.__name__ = f"ours_{method}" + ("_tuned" if tune else "")
    return run


def knows_tune_target(az) -> bool:
    """--tune-target is newer than this benchmark: without it the tuned runs are left out, not failed."""
    proc = az.run("postgres", "dumprestore", "run", "--help", check=False, timeout=300)
    return "--tune-target" in proc.stdout


def load(ctx, shape, scale):
    ctx.src.execute(f"CREATE DATABASE {DB} OWNER {ctx.src.admin}")
    if shape == "pgbench":
        sh([str(ctx.bin / "pgbench"), "-i", "-q", "-s", str(scale), "--foreign-keys", conninfo(ctx.src, DB)],
           ctx.env, stderr=subprocess.DEVNULL)
        return
    if shape == "large":
        return load_large(ctx, scale)
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


def load_large(ctx, scale):
    """A database dominated by one large table (about 75 % of the bytes, 19 MB of heap and 2 indexes per
    --scale unit), with a few medium tables and 50 small ones around it."""
    with ctx.src.connect(DB, superuser=False) as conn:
        conn.execute(f"""
CREATE TABLE readings (id bigint PRIMARY KEY, sensor int NOT NULL, at timestamptz NOT NULL, value double precision,
                       label text);
INSERT INTO readings SELECT g, g % 5000, TIMESTAMPTZ '2025-01-01' + g * INTERVAL '1 second', g * 0.001,
       'reading ' || md5(g::text)
FROM generate_series(1, {scale * 200000}) g;
CREATE INDEX readings_sensor_at ON readings (sensor, at);
CREATE TABLE sensors (id int PRIMARY KEY, name text, meta jsonb);
INSERT INTO sensors SELECT g, 'sensor ' || g, jsonb_build_object('site', g % 40, 'kind', g % 7)
FROM generate_series(1, {scale * 5000}) g;
CREATE TABLE alerts (id bigint PRIMARY KEY, sensor int NOT NULL, note text);
INSERT INTO alerts SELECT g, g % 5000, 'alert ' || md5(g::text) FROM generate_series(1, {scale * 30000}) g;
CREATE INDEX alerts_sensor ON alerts (sensor);
""")
        for i in range(50):
            conn.execute(f"CREATE TABLE small_{i:02} (id int PRIMARY KEY, label text); "
                         f"INSERT INTO small_{i:02} SELECT g, 'row ' || g FROM generate_series(1, 200) g")


class Sampler:
    """Peak resident memory of this process's descendants (summed), sampled every 50 ms, and the CPU seconds each
    program among them used (as last seen: a process's final 50 ms may be missed)."""

    def __init__(self):
        self.peak, self._stop = 0, threading.Event()
        self._cpu = {}  # pid -> (program, CPU seconds)
        self._written = {}  # pid -> bytes it caused to be written to storage (/proc/PID/io write_bytes)
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
                    self._written[pid] = _write_bytes(pid, self._written.get(pid, 0))
            if total > self.peak:
                self.peak, self.at_peak = total, mine

    def written(self) -> int:
        return sum(self._written.values())

    def cpu_by_program(self) -> dict:
        out = {}
        for program, seconds in self._cpu.values():
            out[program] = out.get(program, 0.0) + seconds
        return out


def _write_bytes(pid, last) -> int:
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    except OSError:
        pass  # exited: keep what was last seen
    return last


def connections(*servers) -> int:
    """Logins the servers have accepted so far (log_connections is on)."""
    return sum(pg.logfile.read_text(errors="replace").count("connection authorized") for pg in servers)


class Ctx:
    def __init__(self, **kw):
        self.__dict__.update(kw)


BASE = "by hand, directory -Z0 (-Fd -j N -Z0)"
TUNED_BY_HAND = "by hand, directory -Z0 after tuning by hand"
PIPE = "by hand, pg_dump | psql pipe + ANALYZE"
TUNED_BY_AZ = "by hand, directory -Z0, tuning by az parameter set"
CPU_BUDGETS = {"source": 0.5, "target": 1.0, "client": 0.5}  # cores: a client VM between two cloud servers


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=["pgbench", "realistic", "large"], default="pgbench")
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=min(os.cpu_count() or 2, 8))
    parser.add_argument("--profile", choices=["shared", "three", "azure-disk"], default="shared")
    parser.add_argument("--target-max-wal-size", type=int, metavar="MB",
                        help="azure-disk: the target's default max_wal_size (Flexible's for a P10 disk is 12288). A "
                             "smaller value scales the checkpoint pressure of a large database down to a small one: "
                             "157 MB against 128 MB is what 15 GB is against a P10's 12288 MB")
    parser.add_argument("--detail", action="store_true",
                        help="after every run: CPU seconds per client program, and our runs' step durations")
    parser.add_argument("--only", nargs="*", default=[],
                        help="run only the approaches whose name contains one of these words (the first always runs)")
    return parser.parse_args()


def choose_contenders(args, az) -> list:
    z0 = by_hand_directory(True)
    contenders = [(BASE, z0)]
    if args.profile == "azure-disk":
        contenders.append((TUNED_BY_HAND, tuned_by_hand(z0, through_az=False)))
        contenders.append((TUNED_BY_AZ, tuned_by_hand(z0, through_az=True)))
    contenders += [("by hand, directory (-Fd -j N)", by_hand_directory(False)),
                   (PIPE, by_hand_pipe),
                   ("dumprestore run --method plain", ours("plain")),
                   ("dumprestore run --method directory", ours("directory")),
                   ("dumprestore run --method stream", ours("stream"))]
    if args.profile == "azure-disk":
        if knows_tune_target(az):
            contenders += [(f"dumprestore run --method {m} --tune-target", ours(m, tune=True))
                           for m in ("stream", "directory", "plain")]
        else:
            print("az postgres dumprestore run has no --tune-target (yet): its tuned runs are left out", file=sys.stderr)
    if shutil.which("pgcopydb"):
        contenders.append(("pgcopydb clone", pgcopydb))
    else:
        print("pgcopydb not installed (apt-get install -y pgcopydb): left out", file=sys.stderr)
    if args.only:
        contenders = contenders[:1] + [c for c in contenders[1:] if any(w in c[0] for w in args.only)]
    return contenders


def check_profile(profile):
    if profile in ("three", "azure-disk") and not cpuquota.available():
        sys.exit(f"--profile {profile} needs root and the cgroup-v1 cpu controller at /sys/fs/cgroup/cpu")
    why_not = diskquota.available() if profile == "azure-disk" else ""
    if why_not:
        sys.exit(f"--profile azure-disk: {why_not}")


def server_default(pg, name, value):
    """A value in postgresql.conf (the last line wins), so that ALTER SYSTEM RESET, and the tuning's put-back,
    return to it as to a server's default."""
    with (pg.datadir / "postgresql.conf").open("a") as conf:
        conf.write(f"{name} = '{value}'\n")
    pg.execute("SELECT pg_reload_conf()")


def cpu_budgets(stack, src, tgt) -> dict:
    quotas = {side: cpuquota.CpuQuota(side, cores) for side, cores in CPU_BUDGETS.items()}
    for q in quotas.values():
        stack.callback(q.remove)
    quotas["source"].add_server(src.datadir)
    quotas["target"].add_server(tgt.datadir)
    # Every command below is forked by this thread: it runs in the client's budget. Only this thread: the ARM
    # emulator's threads in this process play Azure's side, which is no client's CPU.
    quotas["client"].add_thread(threading.get_native_id())
    return quotas


def target_disk(tgt) -> dict:
    """What the target's disk and server have done so far: the device's bytes, writes and flushes (each fsync
    of the server is one), the bytes that went around the blkio cap, and the server's WAL bytes, full-page
    images and checkpoints (pg_stat_wal; pg_stat_checkpointer from 17, pg_stat_bgwriter before)."""
    disk = tgt.azure_disk.counters()
    wal_bytes, fpi = tgt.execute("SELECT wal_bytes, wal_fpi FROM pg_stat_wal")[0]
    if tgt.version_num() >= 170000:
        checkpoints = tgt.execute("SELECT num_timed + num_requested FROM pg_stat_checkpointer")[0][0]
    else:
        checkpoints = tgt.execute("SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter")[0][0]
    return {"bytes": disk["device"]["bytes"], "writes": disk["device"]["writes"],
            "flushes": disk["device"]["flushes"], "capped": disk["group"]["bytes"], "wal": int(wal_bytes),
            "fpi": fpi, "checkpoints": checkpoints}


def run_once(ctx, name, contender, quotas, figures, detail):
    """One timed run of one approach, and what it used on each side."""
    f = figures[name]
    before = connections(ctx.src, ctx.tgt)
    cpu_before = {side: q.seconds() for side, q in quotas.items()}
    disk_before = target_disk(ctx.tgt) if ctx.tgt.azure_disk else None
    with Sampler() as sampler:
        started = time.monotonic()
        contender(ctx)
        f["seconds"].append(time.monotonic() - started)
    f["memory"].append(sampler.peak)
    f["client_written"].append(sampler.written())
    if detail:
        print_detail(name, sampler, ctx.__dict__.pop("result", None))
    f["cpu"].append({side: tuple(a - b for a, b in zip(q.seconds(), cpu_before[side])) for side, q in quotas.items()})
    f["connections"].append(connections(ctx.src, ctx.tgt) - before)
    if disk_before is not None:
        after = target_disk(ctx.tgt)
        f["disk"].append({k: after[k] - disk_before[k] for k in after})


def main():
    args = parse_args()
    check_profile(args.profile)
    with ExitStack() as stack:
        world = start_world(stack, flexible_disk="azure" if args.profile == "azure-disk" else "local")
        contenders = choose_contenders(args, world.az)
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
        if args.target_max_wal_size:
            server_default(tgt, "max_wal_size", f"{args.target_max_wal_size}MB")
        quotas = cpu_budgets(stack, src, tgt) if args.profile in ("three", "azure-disk") else {}
        max_wal_size = tgt.execute("SHOW max_wal_size")[0][0]
        expected = table_counts(src, DB)
        size = src.execute("SELECT pg_database_size(%s)", (DB,))[0][0]
        figures = {name: {"seconds": [], "memory": [], "connections": [], "cpu": [], "disk": [], "client_written": []}
                   for name, _ in contenders}
        for round_no in range(args.repeat):
            order = contenders if round_no % 2 == 0 else contenders[::-1]  # alternating order
            for name, contender in order:
                tgt.drop_database(DB)
                # Every run starts from a clean target: what the previous one left dirty is written now, untimed
                # (on Azure it would be written after that migration, while nobody waits).
                tgt.execute("CHECKPOINT")
                ctx.work = work_root / f"{round_no}-{contender.__name__}"
                ctx.work.mkdir()
                run_once(ctx, name, contender, quotas, figures, args.detail)
                assert table_counts(tgt, DB) == expected, f"{name} did not copy everything"
                shutil.rmtree(ctx.work, ignore_errors=True)
                print(f"  round {round_no + 1}: {name}: {figures[name]['seconds'][-1]:.1f}s", file=sys.stderr)
    names = [name for name, _ in contenders]
    print(f"\n{args.shape} scale {args.scale} ({size / 1048576:.0f} MB), {args.jobs} jobs, median of {args.repeat}, "
          f"PostgreSQL {src.major} -> {tgt.major}, TLS, profile {args.profile}"
          + (" (source 0.5 core, target 1, client 0.5)" if quotas else "")
          + (f" (target disk: fsync on, 100 MiB/s, 500 IOPS, max_wal_size {max_wal_size})"
             if args.profile == "azure-disk" else ""))
    print_times(figures, names)
    if quotas:
        print_cpu(figures, names)
    if args.profile == "azure-disk":
        print_disk(figures, names)
    print_targets(figures, names, args.profile)
    print("All runs: the target held every row of every table afterwards.")


def median_seconds(figures, name) -> float:
    return statistics.median(figures[name]["seconds"])


def print_times(figures, names):
    base = median_seconds(figures, BASE)
    tuned = median_seconds(figures, TUNED_BY_HAND) if TUNED_BY_HAND in figures else None
    print(f"{'approach':50} {'median s':>9} {'vs -Z0 by hand':>15}"
          + (f" {'vs tuned by hand':>17}" if tuned else "") + f" {'connections':>12} {'peak MB':>8}")
    for name in names:
        f, med = figures[name], median_seconds(figures, name)
        print(f"{name:50} {med:9.1f} {med / base:14.2f}x" + (f" {med / tuned:16.2f}x" if tuned else "")
              + f" {statistics.median(f['connections']):12.0f} {max(f['memory']) / 1048576:8.0f}")


def print_disk(figures, names):
    """What each approach made the target's disk do (medians): the issue's "bytes written and fsyncs per side".
    The client's MB are what its programs wrote (dump files, logs); the source only reads."""
    cols = ("MB written", "writes", "fsyncs", "uncapped MB", "WAL MB", "FPI", "ckpts", "client MB")
    print(f"\n{'target disk per run (median)':50} " + " ".join(f"{c:>11}" for c in cols))
    for name in names:
        runs = figures[name]["disk"]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        cells = (med["bytes"] / 2**20, med["writes"], med["flushes"], (med["bytes"] - med["capped"]) / 2**20,
                 med["wal"] / 2**20, med["fpi"], med["checkpoints"],
                 statistics.median(figures[name]["client_written"]) / 2**20)
        print(f"{name:50} " + " ".join(f"{c:11.0f}" for c in cells))


def print_targets(figures, names, profile):
    """Issue 18's targets, where this run has both sides of the ratio."""
    if profile == "azure-disk":
        goals = [(n, BASE, 0.6) for n in names if n.endswith("--tune-target")]
        goals += [(n, tuned, 0.9) for tuned in (TUNED_BY_HAND, TUNED_BY_AZ) for n in names if n.endswith("--tune-target")]
    elif profile == "three":
        goals = [("dumprestore run --method stream", BASE, 0.60), ("dumprestore run --method stream", PIPE, 1.0)]
    else:
        return
    for name, other, limit in goals:
        if name in figures and other in figures:
            ratio = median_seconds(figures, name) / median_seconds(figures, other)
            print(f"target: {name} <= {limit} x {other}: {ratio:.2f} "
                  + ("met" if ratio <= limit else "MISSED"))


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
    print(f"\n{'CPU seconds used / throttled (median)':50} " + " ".join(f"{s:>16}" for s in sides))
    for name in names:
        runs = figures[name]["cpu"]
        cells = [f"{statistics.median(r[s][0] for r in runs):7.1f} / {statistics.median(r[s][1] for r in runs):6.1f}"
                 for s in sides]
        print(f"{name:50} " + " ".join(f"{c:>16}" for c in cells))


if __name__ == "__main__":
    main()
