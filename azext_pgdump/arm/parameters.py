"""Server parameters (configurations) through ARM: what a Flexible Server allows that SQL cannot show."""
import time

from azure.core.exceptions import AzureError, HttpResponseError

from azext_pgdump._client_factory import client_for, configuration_update_model
from azext_pgdump.arm.servers import prop


def get_parameter(cli_ctx, server, name: str):
    """The parameter's value, or None when ARM has no such parameter for this server."""
    try:
        model = client_for(cli_ctx, server.kind, server.subscription).configurations.get(
            server.resource_group, server.name, name)
    except HttpResponseError:
        return None
    return prop(model, 'value') or ''


def set_command(server, name: str) -> str:
    """The az command that changes a parameter, with VALUE for the value."""
    return (f'az postgres flexible-server parameter set -g {server.resource_group} -s {server.name} '
            f'--name {name} --value VALUE')


BUSY_WAITS = (2, 4, 8, 15, 30, 30, 30, 60, 60, 60)   # seconds; about 5 min in all


def set_parameter(cli_ctx, server, name: str, value: str, say=None) -> None:
    """Set a dynamic parameter (ARM applies it without a restart); AzureError when refused. A server busy with
    another operation (a backup, a scaling, another parameter: Azure takes one change at a time and answers
    ServerBusy to the others) is asked again, a little later each time, for about five minutes."""
    update = configuration_update_model(server.kind)(value=value, source='user-override')
    configurations = client_for(cli_ctx, server.kind, server.subscription).configurations
    for wait in (*BUSY_WAITS, None):
        try:
            configurations.begin_update(server.resource_group, server.name, name, update).result()
            return
        except AzureError as err:
            if wait is None or not _busy(err):
                raise
            if say:
                say(f'  {server.name} is busy with another operation; setting {name} again in {wait} s...')
            time.sleep(wait)


def _busy(err) -> bool:
    """ServerBusy, as a 409 to the request or as the failed operation's error."""
    code = getattr(getattr(err, 'error', None), 'code', None) or ''
    return code == 'ServerBusy' or 'busy with another operation' in str(err)


def read_replicas(cli_ctx, server) -> list:
    """The names of the server's read replicas."""
    try:
        return [r.name for r in client_for(cli_ctx, server.kind, server.subscription).replicas.list_by_server(
            server.resource_group, server.name)]
    except HttpResponseError:
        return []
