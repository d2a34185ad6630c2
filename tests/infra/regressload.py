"""Load PostgreSQL's regression database into a server as the Azure-like admin (not a superuser).

pg_regress runs each script with psql as a superuser; here the admin runs them, one at a time in the
schedule's order, errors not stopping a script. Statements that need a superuser (C functions, server-side
COPY of files, tablespaces, event triggers, subscriptions...) fail and leave nothing; the point is what the
rest leaves behind. A script that a PostgreSQL 11 server cannot parse in places leaves fewer objects.

What pg_regress gives the scripts, they get here too: PG_ABS_SRCDIR (data files), PG_ABS_BUILDDIR (a
results folder), PG_LIBDIR, PG_DLSUFFIX, and its time zone, date and interval styles. One change is made to
the scripts: a one-line `COPY t FROM|TO :'filename' ...;` becomes psql's `\\copy`, as a user without
pg_read_server_files loads a file, so the tables the later scripts read (onek, tenk1, ...) have their rows."""
import os
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from .pgbin import bindir
from .regressdb import regress_dir

# Scripts not run, with why. The rest of the schedule (216 scripts) is what pg_upgrade's test moves, and
# fast enough whole, as the admin on 2 shared cores: about 41-46 s on 15 (~980 relations left: 627
# tables, 81 partitioned, 283 inheritance links, 62 views, 39 rules, 28 policies, 19 domains, 5 ranges,
# 3 large objects, 11 regress_* roles) and 35 s on a Single-Server-shaped 11 (~940 relations). The
# planner-only scripts leave little and cost little, so choosing among them would buy nothing.
SKIPPED = {
    "tablespace": "CREATE TABLESPACE needs a superuser; nothing else in it",
}
FILE_TIMEOUT = 60   # seconds; a script still running then is cut off, and what it made so far stays
STATEMENT_TIMEOUT = "30s"  # the server's own guard, so a cut-off script leaves no query running


@dataclass
class ScriptRun:
    name: str
    seconds: float
    errors: int
    timed_out: bool = False
    # The server crashed (PostgreSQL 11 segfaults on a few statements of 15's scripts: create_procedure's
    # CALL of a procedure with an OUT argument, triggers' UPDATE moving rows across partitions with
    # transition tables): the rest of that script is lost, and the next waits for the server's recovery.
    crashed: bool = False


@dataclass
class Load:
    dbname: str
    log_dir: Path
    scripts: list = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.scripts)


def schedule(regress: Path) -> list:
    """The scripts of parallel_schedule in order (a group's scripts one after another), less the skipped."""
    names = []
    for line in (regress / "parallel_schedule").read_text().splitlines():
        if line.startswith("test:"):
            names += line.split(":", 1)[1].split()
    return [n for n in names if n not in SKIPPED]


def load_regression(pg, dbname: str = "regression", scripts=None, log_dir: Path = None) -> Load:
    """Create `dbname` as pg's admin and run the regression scripts in it (all of schedule() unless
    `scripts` names some). Returns how long each took and how many errors it printed; its log is kept
    in log_dir (a new temporary folder unless given)."""
    regress = regress_dir()
    with pg.connect(superuser=False) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    work = log_dir or Path(tempfile.mkdtemp(prefix="azext-regress-"))
    (work / "results").mkdir(parents=True, exist_ok=True)
    load = Load(dbname, work)
    env = _env(pg, regress, work)
    for name in schedule(regress) if scripts is None else scripts:
        load.scripts.append(_run_script(pg, dbname, name, regress, work, env))
    return load


def _env(pg, regress: Path, work: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    return dict(env, PGPASSWORD=pg.admin_password, PGTZ="America/Los_Angeles", PGDATESTYLE="Postgres, MDY",
                PGOPTIONS=f"-c intervalstyle=postgres_verbose -c statement_timeout={STATEMENT_TIMEOUT}",
                PGAPPNAME="pg_regress", PG_ABS_SRCDIR=str(regress), PG_ABS_BUILDDIR=str(work),
                PG_LIBDIR=str(pg.bindir.parent / "lib"), PG_DLSUFFIX=".so", LC_MESSAGES="C")


def _run_script(pg, dbname, name, regress, work, env) -> ScriptRun:
    script = work / f"{name}.sql"
    script.write_text(client_side_copy((regress / "sql" / f"{name}.sql").read_text(), regress, work))
    conninfo = make_conninfo(**{**pg.conninfo(dbname, superuser=False), "password": None})
    argv = [str(bindir(18) / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=0", "-f", str(script), "-d", conninfo]
    start = time.monotonic()
    with (work / f"{name}.log").open("w") as log:
        try:
            subprocess.run(argv, env=env, cwd=work, timeout=FILE_TIMEOUT, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=log, check=False)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
    lines = (work / f"{name}.log").read_text().splitlines()
    errors = sum(1 for line in lines if ": ERROR:" in line)
    crashed = any("connection to server was lost" in line for line in lines)
    if crashed:
        _wait_for_recovery(pg, dbname)
    return ScriptRun(name, time.monotonic() - start, errors, timed_out, crashed)


def _wait_for_recovery(pg, dbname, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        try:
            pg.connect(dbname).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


COPY_LINE = re.compile(r"^copy\s+(?P<what>(?:binary\s+)?.+?)\s+(?P<dir>from|to)\s+:'filename'(?P<rest>.*?);\s*$",
                       re.I)
SET_FILENAME = re.compile(r"^\\set filename :(?P<var>abs_srcdir|abs_builddir) '(?P<rel>[^']*)'\s*$")


def client_side_copy(text: str, regress: Path, work: Path) -> str:
    """Server-side COPY of a file of one line -> psql's \\copy of the same file (\\copy takes no variables,
    so the path is written out)."""
    roots = {"abs_srcdir": regress, "abs_builddir": work}
    out, filename = [], None
    for line in text.splitlines():
        setting = SET_FILENAME.match(line)
        if setting:
            filename = f"{roots[setting['var']]}{setting['rel']}"
        copy = COPY_LINE.match(line)
        if copy and filename:
            line = f"\\copy {copy['what']} {copy['dir']} '{filename}'{copy['rest']}"
        out.append(line)
    return "\n".join(out) + "\n"
