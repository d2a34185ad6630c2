"""One call that starts everything a test or the demo needs: certificates, real PostgreSQL servers,
a Single Server gateway, the ARM emulator with a Flexible and a Single server, and a logged-in az."""
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from .arm_emulator import ArmEmulator, EmulatedServer
from .azcli import AzCli, build_wheel
from .certs import make_certs
from .gateway import SingleServerGateway
from .pgserver import PgServer

RESOURCE_GROUP = "azext-pgdump-rg"
FLEXIBLE_MAJOR, SINGLE_MAJOR = 18, 15


@dataclass
class World:
    tmp: Path
    certs: object
    flexible_pg: PgServer
    single_pg: PgServer
    gateway: SingleServerGateway
    emulator: ArmEmulator
    flexible: EmulatedServer
    single: EmulatedServer
    vm_pg: PgServer            # a PostgreSQL outside Azure (plain host), same major as the Single Server
    az: AzCli = None


def start_servers(stack: ExitStack, tmp: Path) -> World:
    certs = make_certs(tmp / "certs")
    flexible_pg = PgServer(name="flex1", major=FLEXIBLE_MAJOR, certs=certs).start()
    stack.callback(flexible_pg.stop)
    single_pg = PgServer(name="single1", major=SINGLE_MAJOR, certs=certs).start()
    stack.callback(single_pg.stop)
    vm_pg = PgServer(name="vm1", major=SINGLE_MAJOR, certs=certs).start()
    stack.callback(vm_pg.stop)
    gateway = SingleServerGateway("single1", single_pg.host, single_pg.port, certs).start()
    stack.callback(gateway.stop)
    emulator = ArmEmulator(certs).start()
    stack.callback(emulator.stop)
    suffix = emulator.metadata()["suffixes"]["postgresqlServerEndpoint"]
    flexible = emulator.add_server(EmulatedServer(
        "flexible", RESOURCE_GROUP, "flex1", flexible_pg, flexible_pg.host, flexible_pg.port, f"flex1.{suffix}"))
    single = emulator.add_server(EmulatedServer(
        "single", RESOURCE_GROUP, "single1", single_pg, gateway.host, gateway.port, f"single1.{suffix}"))
    gateway.admits = lambda ip: emulator.admits(single, ip)
    return World(tmp, certs, flexible_pg, single_pg, gateway, emulator, flexible, single, vm_pg)


def start_world(stack: ExitStack, with_az: bool = True) -> World:
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="azext-pgdump-world-")))
    world = start_servers(stack, tmp)
    if with_az:
        wheel = build_wheel(tmp / "dist")
        world.az = AzCli(world.emulator, world.certs, tmp / "az").setup(wheel)
        stack.callback(world.az.close)
    return world
