"""show-commands: the printed bash really migrates; PowerShell and cmd quoting is right."""
import json
import os
import subprocess

import pytest
from psycopg import sql

from tests.infra.azcli import AZ
from tests.infra.pgbin import bindir
from tests.infra.world import RESOURCE_GROUP
from tests.migration_helpers import assert_same, write_pgpass

AWKWARD = """we'ird "db" $HOME ü"""
SHOW = ("postgres", "dumprestore", "show-commands")


@pytest.fixture(scope="module")
def awkward_db(world, rich_source):
    with rich_source.connect(superuser=False) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(AWKWARD)))
    with rich_source.connect(AWKWARD, superuser=False) as conn:
        conn.execute('CREATE TABLE "it\'s $x" (id int, "ü col" text); '
                     "INSERT INTO \"it's $x\" SELECT g, 'v' || g FROM generate_series(1, 25) g")
    yield AWKWARD
    for pg in (rich_source, world.flexible.pg):
        pg.drop_database(AWKWARD)


def show(world, *extra, env=None):
    gw, flex = world.gateway, world.flexible.pg
    return world.az.run(*SHOW, "-g", RESOURCE_GROUP,
                        "--source-server", "single1", "--source-host", gw.host, "--source-port", str(gw.port),
                        "--source-admin-password", world.single.pg.admin_password,
                        "--target-server", "flex1", "--target-host", flex.host, "--target-port", str(flex.port),
                        "--target-admin-password", flex.admin_password, "--pg-bin-dir", str(bindir(18)), *extra,
                        env=env, check=False)


@pytest.mark.parametrize("method", ["plain", "directory", "stream"])
def test_printed_bash_migrates_for_real(world, awkward_db, tmp_path, method):
    for db in ("appdb", AWKWARD):
        world.flexible.pg.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
    proc = show(world, "--databases", "appdb", AWKWARD, "--method", method)
    assert proc.returncode == 0, proc.stderr
    script = proc.stdout
    for secret in (world.single.pg.admin_password, world.flexible.pg.admin_password):
        assert secret not in script
    assert "user=pgadmin@single1 " in script  # the Single Server login carries its suffix
    assert "read -rs" in script and "2> pgdump/appdb.errors.log" in script
    # unattended, as in a pipeline: passwords in the environment, no standard input, no terminal
    env = dict(world.az.env, PATH=f"{AZ.parent}:{os.environ['PATH']}",
               SOURCE_PGPASSWORD=world.single.pg.admin_password, TARGET_PGPASSWORD=world.flexible.pg.admin_password)
    ran = subprocess.run(["bash", "-c", script], stdin=subprocess.DEVNULL, cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600, start_new_session=True)
    assert ran.returncode == 0, ran.stderr + ran.stdout
    assert "Password for" not in ran.stderr
    assert "No errors in pgdump/appdb.errors.log" in ran.stdout
    for db in ("appdb", AWKWARD):
        assert_same(world.single.pg, world.flexible.pg, db)


@pytest.mark.parametrize("way", ["piped into bash", "pgpass", "PGPASSWORD with a failing step"])
def test_bash_runs_unattended(world, awkward_db, tmp_path, way):
    """`show-commands | bash` (the prompt must not eat the script), a .pgpass, and PGPASSWORD alone; no
    terminal in any of them, so no prompt. A failed step stops the script."""
    world.flexible.pg.drop_database(AWKWARD)
    script = show(world, "--databases", AWKWARD, "--method", "plain", "--no-roles").stdout
    env = dict(world.az.env, PATH=f"{AZ.parent}:{os.environ['PATH']}")
    gw, flex = world.gateway, world.flexible.pg
    if way == "piped into bash":
        env.update(SOURCE_PGPASSWORD=world.single.pg.admin_password, TARGET_PGPASSWORD=flex.admin_password)
        ran = subprocess.run(["bash"], input=script, cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=600, start_new_session=True)
    else:
        if way == "pgpass":
            env["PGPASSFILE"] = str(write_pgpass(tmp_path / "pgpass", [
                (gw.host, gw.port, "pgadmin@single1", world.single.pg.admin_password),
                (flex.host, flex.port, flex.admin, flex.admin_password)]))
        else:  # one password for both servers: the source accepts it, the target does not
            env["PGPASSWORD"] = world.single.pg.admin_password
        ran = subprocess.run(["bash", "-c", script], stdin=subprocess.DEVNULL, cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=600, start_new_session=True)
    assert "Password for" not in ran.stderr
    if way.startswith("PGPASSWORD"):
        assert ran.returncode == 1 and "password authentication failed" in ran.stderr
        assert not list((tmp_path / "pgdump").glob("*.sql"))  # stopped at the failed create: no dump began
        return
    assert ran.returncode == 0, ran.stderr + ran.stdout
    assert_same(world.single.pg, flex, AWKWARD)


STOPPING = ("pg_dump", "createdb", "dropdb")  # steps a script must not go on after


def test_powershell_and_cmd_stop_on_failed_steps_and_keep_the_users_password(world, awkward_db):
    ps = show(world, "--databases", AWKWARD, "--shell", "powershell", "--if-exists", "drop").stdout
    lines = ps.splitlines()
    stopping = [i for i, line in enumerate(lines)
                if "& '" in line and "--version" not in line and any(f"{p}'" in line for p in STOPPING)]
    assert len(stopping) >= 2  # createdb and pg_dump at least (dropdb only where the target has it)
    for i in stopping:
        assert lines[i].endswith("$code = $LASTEXITCODE; $env:PGPASSWORD = $userPGPASSWORD"), lines[i]
        assert lines[i + 1].startswith("if ($code -ne 0)") and "exit $code" in lines[i + 1], lines[i]
    assert "Remove-Item Env:PGPASSWORD" not in ps and "$userPGPASSWORD = $env:PGPASSWORD" in ps
    prompt = next(line for line in lines if line.startswith("$SOURCE_PGPASSWORD = "))
    assert prompt.index("$env:SOURCE_PGPASSWORD") < prompt.index("$env:PGPASSWORD") < prompt.index("Read-Host")
    assert "-NonI*" in ps and "$interactive -and -not (Test-Path $pgpass)" in prompt
    cmd = show(world, "--databases", AWKWARD, "--shell", "cmd", "--if-exists", "drop").stdout.splitlines()
    stopping = [i for i, line in enumerate(cmd)
                if line.startswith('"') and "--version" not in line and any(f'{p}"' in line for p in STOPPING)]
    assert len(stopping) >= 2
    for i in stopping:
        assert cmd[i + 1].startswith("if errorlevel 1 (") and "exit /b 1" in cmd[i + 1], cmd[i]


def test_both_methods_are_shown_like_the_connect_blade(world):
    proc = show(world, "--databases", "appdb", "--method", "both", "--if-exists", "drop")
    assert proc.returncode == 0, proc.stderr
    assert "/dropdb" in proc.stdout  # the target has appdb: the plan drops it first, as `run` would
    assert "pg_dump & psql - using singular text file" in proc.stdout
    assert "pg_dump & pg_restore - using multiple cores" in proc.stdout
    assert "| tee pgdump/plain/appdb.sql |" in proc.stdout and "--format=directory" in proc.stdout


def test_dump_half_without_a_target(world):
    gw = world.gateway
    proc = world.az.run(*SHOW, "-g", RESOURCE_GROUP, "--source-server", "single1", "--source-host", gw.host,
                        "--source-port", str(gw.port), "--source-admin-password", world.single.pg.admin_password,
                        "--databases", "appdb", "--pg-bin-dir", str(bindir(18)), check=False)
    assert proc.returncode == 0, proc.stderr
    assert "pg_dumpall" in proc.stdout and "pg_dump" in proc.stdout
    assert "pg_restore" not in proc.stdout.replace("pg_restore --version", "")
    assert "TARGET_PGPASSWORD" not in proc.stdout


def test_powershell_quoting_and_hidden_prompt(world, awkward_db):
    script = show(world, "--databases", AWKWARD, "--shell", "powershell", "--if-exists", "drop").stdout
    assert "Read-Host -AsSecureString" in script and "$env:PGPASSWORD = $SOURCE_PGPASSWORD" in script
    assert """dbname='we\\'ird "db" $HOME ü'""".replace("'", "''") in script  # single quotes doubled
    assert "& '" in script and "$HOME" in script  # $ is literal inside single quotes
    assert world.single.pg.admin_password not in script


def test_cmd_quoting_and_password_from_environment(world, awkward_db):
    script = show(world, "--databases", AWKWARD, "--shell", "cmd", "--if-exists", "drop").stdout
    assert "if not defined SOURCE_PGPASSWORD if defined PGPASSWORD" in script
    assert 'set "PGPASSWORD=!SOURCE_PGPASSWORD!"' in script
    assert script.index("setlocal EnableDelayedExpansion") < script.index("PGPASSWORD=")
    assert '\\"db\\"' in script and "REM " in script
    assert world.single.pg.admin_password not in script


def test_json_gives_structured_steps(world):
    proc = show(world, "--databases", "appdb", "--method", "directory", "--if-exists", "drop", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    [section] = json.loads(proc.stdout)
    steps = {s["name"]: s for s in section["steps"]}
    assert steps["dump"]["argv"][0].endswith("/pg_dump")
    assert steps["dump"]["environment"] == {"PGPASSWORD": "<source password>"}
    assert steps["restore"]["environment"]["PGOPTIONS"] == "-c synchronous_commit=off"
    assert steps["restore"]["stderr"].endswith("appdb.errors.log")
