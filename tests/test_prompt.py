"""On a terminal, a missing password is asked for with a hidden prompt; without one, the error names the option."""
import os
import pty
import select
import subprocess
import time

from tests.infra.azcli import AZ
from tests.infra.pgbin import bindir


def vm_args(world):
    vm = world.vm_pg
    return ["postgres", "dumprestore", "dump", "--source-host", vm.host, "--source-port", str(vm.port),
            "--source-admin-user", vm.admin, "--databases", "postgres", "--dry-run", "--no-roles",
            "--pg-bin-dir", str(bindir(15)), "-o", "json"]


def test_prompt_on_a_terminal(world):
    env = {k: v for k, v in world.az.env.items() if k not in ("PGPASSWORD", "PGPASSFILE")}
    env["PGPASSFILE"] = "/nonexistent"
    controller, terminal = pty.openpty()
    proc = subprocess.Popen([str(AZ), *vm_args(world)], env=env, stdin=terminal, stdout=subprocess.PIPE,
                            stderr=terminal, start_new_session=True,
                            preexec_fn=lambda: __import__("fcntl").ioctl(0, __import__("termios").TIOCSCTTY, 0))
    os.close(terminal)
    seen, deadline = b"", time.time() + 120
    while b"Password for" not in seen:
        assert time.time() < deadline and proc.poll() is None, seen
        if select.select([controller], [], [], 1)[0]:
            seen += os.read(controller, 4096)
    os.write(controller, (world.vm_pg.admin_password + "\n").encode())
    out, _ = proc.communicate(timeout=120)
    os.close(controller)
    assert proc.returncode == 0, seen
    assert b"Password for pgadmin on 127.0.0.1" in seen
    assert world.vm_pg.admin_password.encode() not in seen + out  # the prompt does not echo it
    assert b'"mode": "dump"' in out


def test_no_terminal_names_the_option(world):
    env = {k: v for k, v in world.az.env.items() if k not in ("PGPASSWORD", "PGPASSFILE")}
    env["PGPASSFILE"] = "/nonexistent"
    proc = world.az.run(*vm_args(world), env=env, check=False)
    assert proc.returncode != 0 and "--source-admin-password" in proc.stderr and "no terminal" in proc.stderr
