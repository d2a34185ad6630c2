"""One function per verb: wire the management plane (arm/) to the data plane (pg/), return plain data."""
from azext_pgdump.arm import servers
from azext_pgdump.arm.resource_ids import ServerRef, parse_server_id


def _server_ref(resource_group_name, server_name, server_type, ids) -> ServerRef:
    subscription = parse_server_id(ids).subscription if ids else None
    return ServerRef(resource_group=resource_group_name, name=server_name, kind=server_type,
                     subscription=subscription)


def list_databases(cmd, resource_group_name=None, server_name=None, server_type='auto', ids=None):
    server = servers.get_server(cmd.cli_ctx, _server_ref(resource_group_name, server_name, server_type, ids))
    databases = servers.list_databases(cmd.cli_ctx, server)
    for db in databases:
        db.update(server=server.name, serverType=server.kind, resourceGroup=server.resource_group)
    return databases
