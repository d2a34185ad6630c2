"""Turn what the user typed for one side (source or target) into a data-plane Endpoint."""
from dataclasses import dataclass, replace
from typing import Optional

from azure.cli.core.azclierror import InvalidArgumentValueError, RequiredArgumentMissingError

from azext_pgdump.arm import entra, servers
from azext_pgdump.arm.resource_ids import ServerRef, parse_server_id
from azext_pgdump.pg.endpoint import DEFAULT_TIMEOUT, Endpoint


@dataclass(frozen=True)
class SideArgs:
    side: str                          # 'source' or 'target': names the options in messages
    server: Optional[str] = None       # a server name or a full resource ID
    resource_group: Optional[str] = None
    server_type: str = 'auto'
    host: Optional[str] = None
    port: Optional[int] = None
    user: Optional[str] = None
    ssl_mode: str = 'require'
    ssl_root_cert: Optional[str] = None
    auth_type: str = 'password'        # 'password' or 'entra'
    timeout: int = DEFAULT_TIMEOUT     # --timeout: seconds a silent server or a lock is waited for


def single_server_login(user: str, server_name: str) -> str:
    """Single Server's gateway wants user@servername; a login that has an @ already is left alone."""
    return user if '@' in user else f'{user}@{server_name}'


def _server_ref(cli_ctx, args: SideArgs) -> ServerRef:
    fqdn_name = servers.server_name_from_fqdn(cli_ctx, args.server)
    if fqdn_name and not args.resource_group:
        return servers.find_by_name(cli_ctx, fqdn_name, args.server_type)
    if fqdn_name:
        return ServerRef(resource_group=args.resource_group, name=fqdn_name, kind=args.server_type)
    if args.server.startswith('/'):
        try:
            return parse_server_id(args.server)
        except ValueError as err:
            raise InvalidArgumentValueError(
                str(err), recommendation=f'Pass --{args.side}-server NAME with --{args.side}-resource-group, or a '
                                         'full ID from `az postgres flexible-server show --query id`.') from err
    if not args.resource_group:
        raise RequiredArgumentMissingError(
            f"A resource group is required for {args.side} server '{args.server}'.",
            recommendation=f'Pass --{args.side}-resource-group RG (or -g RG for both servers), or set a default with '
                           '`az config set defaults.group=RG`.')
    return ServerRef(resource_group=args.resource_group, name=args.server, kind=args.server_type)


def resolve(cli_ctx, args: SideArgs):
    """(Endpoint, ArmServer or None): the server as ARM describes it, when it is in Azure."""
    if not args.server and args.host and servers.server_name_from_fqdn(cli_ctx, args.host):
        args = replace(args, server=args.host)  # an Azure host name: ARM still knows the server behind it
    if args.server:
        server = servers.get_server(cli_ctx, _server_ref(cli_ctx, args))
        user = args.user or (entra.current_user(cli_ctx) if args.auth_type == 'entra' else server.admin_login)
        if server.kind == 'single':
            user = single_server_login(user, server.name)
        return Endpoint(host=args.host or server.fqdn, port=args.port or 5432, user=user, kind=server.kind,
                        label=f'{server.name} ({servers.KIND_LABEL[server.kind]})',
                        major=server.major, sslmode=args.ssl_mode,
                        sslrootcert=args.ssl_root_cert, timeout=args.timeout), server
    if args.host:
        if not args.user and args.auth_type == 'entra':
            args = replace(args, user=entra.current_user(cli_ctx))
        if not args.user:
            raise RequiredArgumentMissingError(
                f'A login is required for {args.side} host {args.host}.',
                recommendation=f'Pass --{args.side}-admin-user NAME.')
        return Endpoint(host=args.host, port=args.port or 5432, user=args.user, sslmode=args.ssl_mode,
                        sslrootcert=args.ssl_root_cert, timeout=args.timeout), None
    raise RequiredArgumentMissingError(
        f'The {args.side} server is missing.',
        recommendation=f'Pass --{args.side}-server NAME (with a resource group) or a resource ID, or '
                       f'--{args.side}-host HOST for a server outside Azure.')
