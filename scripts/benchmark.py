"""Side-by-side timing of a whole database move: what users would type by hand, pgcopydb, and
`az postgres dumprestore run`, between two real local servers (a PostgreSQL 11 Single Server -> Flexible 18, TLS, non-superuser
admin, like Azure). Prints medians and ratios; absolute seconds on a shared machine mean little.

    python scripts/benchmark.py [--scale 10] [--repeat 3] [--jobs 2]

--scale is pgbench's (1 = 100,000 rows in pgbench_accounts, about 15 MB)."""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.infra.pgbin import bindir  # noqa: E402
from tests.infra.world import RESOURCE_GROUP, start_world  # noqa: E402
from tests.migration_helpers import table_counts, write_pgpass  # noqa: E402

DB = "benchdb"


def conninfo(pg, dbname):
    return f"host={pg.host} port={pg.port} user={pg.admin} dbname={dbname} sslmode=require"


def sh(argv, env, ok=(0,), **kw):
    code = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, timeout=3600, **kw).returncode
    if code not in ok:
        raise subprocess.CalledProcessError(code, argv)


def reset_target(world):
    world.flexible.pg.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


def by_hand_plain(world, env, work, bin18, jobs):
    """Microsoft's guide, singular text file: pg_dump to a .sql file, createdb, psql -f."""
    src, tgt = world.single.pg, world.flexible.pg
    sh([str(bin18 / "pg_dump"), "-f", str(work / "db.sql"), "-d", conninfo(src, DB)], env)
    sh([str(bin18 / "createdb"), f"--maintenance-db={conninfo(tgt, 'postgres')}", DB], env)
    sh([str(bin18 / "psql"), "-q", "-f", str(work / "db.sql"), "-d", conninfo(tgt, DB)], env,
       stderr=open(work / "errors.log", "w"))


def by_hand_directory(world, env, work, bin18, jobs):
    """Microsoft's guide, multiple cores: pg_dump -Fd -j N, createdb, pg_restore -j N."""
    src, tgt = world.single.pg, world.flexible.pg
    sh([str(bin18 / "pg_dump"), "-Fd", "-j", str(jobs), "-f", str(work / "dir"), "-d", conninfo(src, DB)], env)
    sh([str(bin18 / "createdb"), f"--maintenance-db={conninfo(tgt, 'postgres')}", DB], env)
    # pg_restore exits 1 on the errors a Single Server source brings (ALTER SCHEMA public OWNER TO
    # azure_superuser): the guide's user reads errors.log and goes on.
    sh([str(bin18 / "pg_restore"), "-j", str(jobs), "-d", conninfo(tgt, DB), str(work / "dir")], env, ok=(0, 1),
       stderr=open(work / "errors.log", "w"))


def pgcopydb(world, env, work, bin18, jobs):
    """pgcopydb clone (Debian's package), tables and indexes in parallel, no roles."""
    src, tgt = world.single.pg, world.flexible.pg
    sh([str(bin18 / "createdb"), f"--maintenance-db={conninfo(tgt, 'postgres')}", DB], env)
    sh(["pgcopydb", "clone", "--no-owner", "--no-acl", "--skip-extensions", "--dir", str(work / "pgcopydb"),
        "--table-jobs", str(jobs), "--index-jobs", str(jobs),
        "--source", conninfo(src, DB), "--target", conninfo(tgt, DB)],
       dict(env, PGCOPYDB_SOURCE_PGURI=conninfo(src, DB), PATH=f"{bin18}:{env['PATH']}"),
       stderr=open(work / "pgcopydb.log", "w"))


def ours(method):
    def run(world, env, work, bin18, jobs):
        gw, tgt = world.gateway, world.flexible.pg
        proc = world.az.run(
            "postgres", "dumprestore", "run", "-g", RESOURCE_GROUP, "--databases", DB, "--no-roles",
            "--source-server", "single1", "--source-host", gw.host, "--source-port", str(gw.port),
            "--target-server", "flex1", "--target-host", tgt.host, "--target-port", str(tgt.port),
            "--method", method, "--jobs", str(jobs), "--pg-bin-dir", str(bin18), "--work-dir", str(work / "wd"),
            "--only-show-errors", "-o", "none", env=env, check=False, timeout=3600)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr)
    run.__doc__ = f"az postgres dumprestore run --method {method} (roles off, ANALYZE included)"
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=min(os.cpu_count() or 2, 8))
    parser.add_argument("--only", nargs="*", default=[],
                        help="run only the approaches whose name contains one of these words (the first always runs)")
    args = parser.parse_args()
    bin18 = bindir(18)
    contenders = [("by hand, plain (pg_dump | psql)", by_hand_plain),
                  ("by hand, directory (-Fd -j N)", by_hand_directory),
                  ("dumprestore run --method plain", ours("plain")),
                  ("dumprestore run --method directory", ours("directory")),
                  ("dumprestore run --method stream", ours("stream"))]
    if shutil.which("pgcopydb"):
        contenders.append(("pgcopydb clone", pgcopydb))
    else:
        print("pgcopydb not installed (apt-get install -y pgcopydb): left out", file=sys.stderr)
    if args.only:
        contenders = contenders[:1] + [c for c in contenders[1:] if any(w in c[0] for w in args.only)]
    with ExitStack() as stack:
        world = start_world(stack)
        src, tgt = world.single.pg, world.flexible.pg
        work_root = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        pgpass = write_pgpass(work_root / "pgpass", [
            (world.gateway.host, world.gateway.port, f"{src.admin}@single1", src.admin_password),
            (src.host, src.port, src.admin, src.admin_password), (tgt.host, tgt.port, tgt.admin, tgt.admin_password)])
        env = dict(world.az.env, PGPASSFILE=str(pgpass))
        src.execute(f"CREATE DATABASE {DB} OWNER {src.admin}")
        print(f"Loading pgbench scale {args.scale} into PostgreSQL {src.major}...", file=sys.stderr)
        sh([str(bin18 / "pgbench"), "-i", "-q", "-s", str(args.scale), "--foreign-keys", conninfo(src, DB)], env,
           stderr=subprocess.DEVNULL)
        expected = table_counts(src, DB)
        times = {name: [] for name, _ in contenders}
        for round_no in range(args.repeat):
            for name, contender in contenders:  # interleaved, so that machine noise spreads over all
                reset_target(world)
                work = work_root / f"{round_no}-{len(times[name])}-{contender.__name__}"
                work.mkdir()
                started = time.monotonic()
                contender(world, env, work, bin18, args.jobs)
                times[name].append(time.monotonic() - started)
                assert table_counts(tgt, DB) == expected, f"{name} did not copy everything"
                shutil.rmtree(work, ignore_errors=True)
                print(f"  round {round_no + 1}: {name}: {times[name][-1]:.1f}s", file=sys.stderr)
    base = statistics.median(times[contenders[0][0]])
    print(f"\npgbench scale {args.scale}, {args.jobs} jobs, median of {args.repeat}, "
          f"PostgreSQL {src.major} -> {tgt.major}, TLS")
    print(f"{'approach':40} {'median s':>9} {'vs by-hand plain':>17}")
    for name, _ in contenders:
        med = statistics.median(times[name])
        print(f"{name:40} {med:9.1f} {base / med:16.2f}x")


if __name__ == "__main__":
    main()
