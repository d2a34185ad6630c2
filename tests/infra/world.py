"""One call that starts everything a test or the demo needs: certificates, real PostgreSQL servers,
a Single Server gateway, the ARM emulator with a Flexible and a Single server, and a logged-in az."""
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from .arm_emulator import ArmEmulator, EmulatedServer
from .azcli import AzCli, build_wheel
from .certs import make_certs
from .gateway import SingleServerGateway
from .locales import FLEXIBLE_LOCALE
from .pgserver import PgServer, flexible_server, single_server

RESOURCE_GROUP = "azext-pgdump-rg"
# What users run: Single Servers on PostgreSQL 11 (and 10), Flexible targets on 16 and 18, and a
# PostgreSQL 15 on a VM (a plain host, outside Azure).
FLEXIBLE_MAJOR, FLEXIBLE16_MAJOR, SINGLE_MAJOR, SINGLE10_MAJOR, VM_MAJOR = 18, 16, 11, 10, 15


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
    vm_pg: PgServer            # a PostgreSQL outside Azure (plain host)
    flexible16: EmulatedServer = None
    single10: EmulatedServer = None
    gateway10: SingleServerGateway = None
    az: AzCli = None


def start_all(stack: ExitStack, servers: list) -> None:
    """initdb and start every server at once: most of the time is each server's own start-up."""
    with ThreadPoolExecutor(len(servers)) as pool:
        futures = [pool.submit(pg.start) for pg in servers]
    for pg, future in zip(servers, futures):
        if future.exception() is None:
            stack.callback(pg.stop)
    for future in futures:
        future.result()


def start_servers(stack: ExitStack, tmp: Path, flexible_disk: str = "local") -> World:
    """flexible_disk="azure": flex1 on a disk like Flexible's (fsync on, P10-like write cap; root only)."""
    certs = make_certs(tmp / "certs")
    flexible_pg = flexible_server("flex1", FLEXIBLE_MAJOR, certs, disk=flexible_disk)
    flexible16_pg = flexible_server("flex16", FLEXIBLE16_MAJOR, certs)
    single_pg = single_server("single1", SINGLE_MAJOR, certs)
    single10_pg = single_server("single10", SINGLE10_MAJOR, certs)
    vm_pg = PgServer(name="vm1", major=VM_MAJOR, certs=certs, locale=FLEXIBLE_LOCALE)
    start_all(stack, [flexible_pg, flexible16_pg, single_pg, single10_pg, vm_pg])
    gateway = SingleServerGateway("single1", single_pg.host, single_pg.port, certs).start()
    stack.callback(gateway.stop)
    gateway10 = SingleServerGateway("single10", single10_pg.host, single10_pg.port, certs).start()
    stack.callback(gateway10.stop)
    emulator = ArmEmulator(certs).start()
    stack.callback(emulator.stop)
    suffix = emulator.metadata()["suffixes"]["postgresqlServerEndpoint"]
    flexible = emulator.add_server(EmulatedServer(
        "flexible", RESOURCE_GROUP, "flex1", flexible_pg, flexible_pg.host, flexible_pg.port, f"flex1.{suffix}"))
    flexible16 = emulator.add_server(EmulatedServer(
        "flexible", RESOURCE_GROUP, "flex16", flexible16_pg, flexible16_pg.host, flexible16_pg.port,
        f"flex16.{suffix}"))
    single = emulator.add_server(EmulatedServer(
        "single", RESOURCE_GROUP, "single1", single_pg, gateway.host, gateway.port, f"single1.{suffix}"))
    single10 = emulator.add_server(EmulatedServer(
        "single", RESOURCE_GROUP, "single10", single10_pg, gateway10.host, gateway10.port, f"single10.{suffix}"))
    gateway.admits = lambda ip: emulator.admits(single, ip)
    gateway.token_status = emulator.token_status
    gateway10.admits = lambda ip: emulator.admits(single10, ip)
    return World(tmp, certs, flexible_pg, single_pg, gateway, emulator, flexible, single, vm_pg,
                 flexible16=flexible16, single10=single10, gateway10=gateway10)


def start_world(stack: ExitStack, with_az: bool = True, flexible_disk: str = "local") -> World:
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="azext-pgdump-world-")))
    world = start_servers(stack, tmp, flexible_disk)
    if with_az:
        wheel = build_wheel(tmp / "dist")
        world.az = AzCli(world.emulator, world.certs, tmp / "az").setup(wheel)
        stack.callback(world.az.close)
    return world
