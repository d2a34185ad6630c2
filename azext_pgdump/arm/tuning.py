"""The target's server parameters for a load, through ARM: read what the server has and allows, set Microsoft's
recommendations (pg/settings.py decides which), and give each one back. Only a Flexible Server has them."""
from concurrent.futures import ThreadPoolExecutor

from azure.core.exceptions import AzureError, ResourceNotFoundError
from knack.log import get_logger

from azext_pgdump._client_factory import client_for
from azext_pgdump.arm import parameters
from azext_pgdump.arm.servers import prop
from azext_pgdump.pg import catalog, settings

logger = get_logger(__name__)


def _configurations(cli_ctx, server):
    return client_for(cli_ctx, server.kind, server.subscription).configurations


def read_parameter(cli_ctx, server, name: str):
    """The parameter as ARM describes it; None when the server has no such parameter."""
    try:
        model = _configurations(cli_ctx, server).get(server.resource_group, server.name, name)
    except ResourceNotFoundError:
        return None
    return settings.Parameter(
        name=name, value=str(prop(model, 'value') or ''), allowed=prop(model, 'allowed_values') or '',
        dynamic=prop(model, 'is_dynamic_config') is not False, read_only=bool(prop(model, 'is_read_only')),
        pending_restart=bool(prop(model, 'is_config_pending_restart')), unit=prop(model, 'unit') or '')


def read_parameters(cli_ctx, server, names) -> dict:
    """name -> Parameter for the names the server has; ARM round trips at once."""
    with ThreadPoolExecutor(4) as pool:
        found = dict(zip(names, pool.map(lambda n: read_parameter(cli_ctx, server, n), names)))
    return {n: p for n, p in found.items() if p is not None}


def plan_for(cli_ctx, server, target, incoming_bytes: int, jobs: int) -> settings.Tuning:
    """The changes a run will make to `server` (the ArmServer of the `target` endpoint) for a load of
    `incoming_bytes`: the disk it has left caps max_wal_size, its memory caps maintenance_work_mem."""
    names = [n for n, _ in settings.RECOMMENDED] + ['shared_buffers']
    params = read_parameters(cli_ctx, server, names)
    storage, disk = server.storage_bytes, None
    if storage:
        with catalog.connect(target) as conn:
            wal = catalog.wal_bytes(conn)
            if wal is None:   # pg_wal cannot be listed: assume it is as full as max_wal_size lets it be
                wal = int(params['max_wal_size'].value) << 20 if 'max_wal_size' in params else 0
            disk = (storage, catalog.databases_bytes(conn) + wal, incoming_bytes)
    buffers = params.pop('shared_buffers', None)
    buffers_kb = int(buffers.value) * 8 if buffers and buffers.value.isdigit() else None   # 8 kB pages
    return settings.plan_tuning(params, server.name, server.resource_group, disk, buffers_kb, jobs)


class Applier:
    """What pg/run.py calls to set and give back the parameters of one server (settings.SettingError on failure)."""

    def __init__(self, cli_ctx, server):
        self.cli_ctx, self.server = cli_ctx, server

    def read(self, name: str):
        try:
            found = read_parameter(self.cli_ctx, self.server, name)
        except AzureError as err:
            raise settings.SettingError(f'could not read {name}: {_message(err)}') from err
        return found.value if found else None

    def write(self, name: str, value: str) -> None:
        try:
            parameters.set_parameter(self.cli_ctx, self.server, name, value, lambda line: logger.warning(line.strip()))
        except AzureError as err:
            raise settings.SettingError(f'could not set {name} to {value}: {_message(err)}') from err


def _message(err) -> str:
    return getattr(err, 'message', None) or str(err)
