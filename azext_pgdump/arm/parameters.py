"""Server parameters (configurations) through ARM: what a Flexible Server allows that SQL cannot show."""
from azure.core.exceptions import HttpResponseError

from azext_pgdump._client_factory import client_for
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
