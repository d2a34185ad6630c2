"""Server parameters (configurations) through ARM: what a Flexible Server allows that SQL cannot show."""
from azure.core.exceptions import HttpResponseError

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


def set_parameter(cli_ctx, server, name: str, value: str) -> None:
    """Set a dynamic parameter (ARM applies it without a restart); HttpResponseError when refused."""
    update = configuration_update_model(server.kind)(value=value, source='user-override')
    client_for(cli_ctx, server.kind, server.subscription).configurations.begin_update(
        server.resource_group, server.name, name, update).result()


def read_replicas(cli_ctx, server) -> list:
    """The names of the server's read replicas."""
    try:
        return [r.name for r in client_for(cli_ctx, server.kind, server.subscription).replicas.list_by_server(
            server.resource_group, server.name)]
    except HttpResponseError:
        return []
