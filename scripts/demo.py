"""`make demo`: a real migration through the real az, on this machine, in about a minute.

Starts a PostgreSQL 11 Single Server (bootstrapped by azure_superuser, Windows locale, behind a gateway
that wants user@servername) and a PostgreSQL 18 Flexible Server, both shaped like Azure's, and a local
HTTPS ARM emulator that az is logged in to. Then it creates sample databases on the Single Server (one
owned by an application role), lists the databases of both servers through az,
migrates everything with `az postgres dumprestore run --verify`, and compares row counts."""
import shlex
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.infra.pgbin import bindir  # noqa: E402
from tests.infra.world import RESOURCE_GROUP, start_world  # noqa: E402
from tests.migration_helpers import (create_app_owned, create_rich_source, table_counts,  # noqa: E402
                                     write_pgpass)


def show(title):
    print(f"\n=== {title}", flush=True)


def az(world, env, *args):
    print("$ az " + " ".join(shlex.quote(a) for a in args), flush=True)
    proc = world.az.run(*args, env=env, check=False, timeout=900)
    print(proc.stdout, end="", flush=True)
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
        raise SystemExit(proc.returncode)
    return proc


def main():
    with ExitStack() as stack:
        show("Starting the test servers (Single Server 11 and 10, Flexible 16 and 18, a VM's 15), the ARM emulator "
             "and az; migrating single1 (PostgreSQL 11) to flex1 (18)")
        world = start_world(stack)
        create_rich_source(world.single.pg)
        create_app_owned(world.single.pg)
        world.flexible.parameters["azure.extensions"] = "citext"  # shop uses it: allow-listed, as check asks
        gw, flex = world.gateway, world.flexible.pg
        pgpass = write_pgpass(Path(stack.enter_context(tempfile.TemporaryDirectory())) / "pgpass", [
            (gw.host, gw.port, f"{world.single.pg.admin}@single1", world.single.pg.admin_password),
            (flex.host, flex.port, flex.admin, flex.admin_password)])
        env = dict(world.az.env, PGPASSFILE=str(pgpass), AZURE_CORE_ONLY_SHOW_ERRORS="true")
        for server in ("single1", "flex1"):
            show(f"Databases of {server}, through ARM")
            az(world, env, "postgres", "dumprestore", "list-databases", "-g", RESOURCE_GROUP, "-s", server,
               "-o", "table")
        show("Migrating every database of single1 to flex1 (--method stream, the default)")
        work = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "migration"
        env_progress = dict(env, AZURE_CORE_ONLY_SHOW_ERRORS="false")
        proc = world.az.run(
            "postgres", "dumprestore", "run", "-g", RESOURCE_GROUP,
            "--source-server", "single1", "--source-host", gw.host, "--source-port", str(gw.port),
            "--target-server", "flex1", "--target-host", flex.host, "--target-port", str(flex.port),
            "--pg-bin-dir", str(bindir(18)), "--work-dir", str(work), "--verify", "-o", "table",
            env=env_progress, check=False, timeout=900)
        print(proc.stderr.replace("WARNING: Command group 'postgres dumprestore' is in preview and under "
                                  "development. Reference and support levels: https://aka.ms/CLI_refstatus\n", ""),
              end="")
        print(proc.stdout)
        if proc.returncode != 0:
            raise SystemExit(proc.returncode)
        show("Row counts, source vs target")
        for db in ("appdb", "shop"):
            source, target = table_counts(world.single.pg, db), table_counts(flex, db)
            for table in sorted(source):
                print(f"{db + ': ' + table:50} {source[table]:7} {target.get(table, 'MISSING'):>7}")
            if source != target:
                raise SystemExit("row counts differ")
        print("\nThe target holds what the source holds.")


if __name__ == "__main__":
    main()
