"""Look servers and their databases up in ARM, for both server kinds."""
import re
from dataclasses import dataclass
from typing import Optional

from azure.cli.core.azclierror import AzureResponseError, ResourceNotFoundError
from azure.core.exceptions import HttpResponseError
from azure.core.exceptions import ResourceNotFoundError as SdkNotFound
from knack.log import get_logger

from azext_pgdump._client_factory import client_for
from azext_pgdump.arm.resource_ids import ServerRef

logger = get_logger(__name__)

KIND_LABEL = {'flexible': 'Flexible Server', 'single': 'Single Server'}
# Databases every Azure server has that a migration never copies.
SERVICE_DATABASES = frozenset({'azure_maintenance', 'azure_sys', 'template0', 'template1'})


@dataclass(frozen=True)
class ArmServer:
    kind: str
    id: str
    name: str
    resource_group: str
    subscription: str
    fqdn: str
    admin_login: str
    version: str
    public_network_access: str
    storage_bytes: Optional[int] = None     # Flexible: provisioned storage (caps --tune-target's max_wal_size)
    high_availability: str = 'Disabled'     # Flexible: Disabled, ZoneRedundant, SameZone

    @property
    def major(self):
        """9 for "9.6", 11 for "11"; None when ARM says nothing usable."""
        match = re.match(r'\d+', self.version or '')
        return int(match.group(0)) if match else None


def prop(model, name):
    """A property of a flattened (msrest) or nested (typespec) SDK model."""
    props = getattr(model, 'properties', None)
    return getattr(props, name, None) if props is not None else getattr(model, name, None)


def _error_code(err: HttpResponseError) -> str:
    code = getattr(getattr(err, 'error', None), 'code', None)
    if code:
        return code
    try:
        return err.response.json()['error']['code']
    except Exception:  # pylint: disable=broad-except
        return ''


def _text(value) -> str:
    """SDK enums (PostgresMajorVersion, ...) by their wire value."""
    return str(getattr(value, 'value', value))


def _to_server(kind: str, model, ref: ServerRef, client) -> ArmServer:
    network = prop(model, 'network')
    public = getattr(network, 'public_network_access', None) if network else prop(model, 'public_network_access')
    size = getattr(prop(model, 'storage'), 'storage_size_gb', None)
    mode = getattr(prop(model, 'high_availability'), 'mode', None)
    return ArmServer(kind=kind, id=model.id, name=model.name, resource_group=ref.resource_group,
                     subscription=client._config.subscription_id,  # pylint: disable=protected-access
                     fqdn=prop(model, 'fully_qualified_domain_name'), admin_login=prop(model, 'administrator_login'),
                     version=_text(prop(model, 'version')), public_network_access=_text(public or 'Enabled'),
                     storage_bytes=int(size) << 30 if size else None,
                     high_availability=_text(mode) if mode else 'Disabled')


def get_server(cli_ctx, ref: ServerRef) -> ArmServer:
    """The server `ref` names; with kind 'auto', Flexible Server is tried first, then Single Server."""
    kinds = ['flexible', 'single'] if ref.kind == 'auto' else [ref.kind]
    for kind in kinds:
        client = client_for(cli_ctx, kind, ref.subscription)
        try:
            model = client.servers.get(ref.resource_group, ref.name)
        except SdkNotFound as err:
            if _error_code(err) == 'ResourceGroupNotFound':
                raise ResourceNotFoundError(
                    f"Resource group '{ref.resource_group}' was not found.",
                    recommendation='Check the name with `az group list -o table`, or choose the subscription that '
                                   'holds it with --subscription.') from err
            logger.debug("No %s named %s in %s", KIND_LABEL[kind], ref.name, ref.resource_group)
            continue
        except HttpResponseError as err:
            raise AzureResponseError(f'Azure Resource Manager refused to look up {ref.name}: {err.message}',
                                     recommendation='Check `az account show` and your access to the server.') \
                from err
        return _to_server(kind, model, ref, client)
    looked_for = ' or '.join(KIND_LABEL[k] for k in kinds)
    raise ResourceNotFoundError(
        f"No {looked_for} named '{ref.name}' was found in resource group '{ref.resource_group}'.",
        recommendation='List the servers with `az postgres flexible-server list -g '
                       f'{ref.resource_group} -o table`, check --subscription, or pass --ids with the full ID.')


def list_databases(cli_ctx, server: ArmServer) -> list:
    client = client_for(cli_ctx, server.kind, server.subscription)
    result = []
    for db in client.databases.list_by_server(server.resource_group, server.name):
        result.append({'name': db.name, 'charset': prop(db, 'charset'), 'collation': prop(db, 'collation'),
                       'migratable': db.name not in SERVICE_DATABASES, 'id': db.id})
    return result


def server_name_from_fqdn(cli_ctx, host: str):
    """'mydemo' for 'mydemo.postgres.database.azure.com' (the suffix of the active cloud, also with a
    '.private.' label for private access); None for a host that is not an Azure server's."""
    suffix = (cli_ctx.cloud.suffixes.postgresql_server_endpoint or '').lower()
    host = host.lower().rstrip('.')
    if not suffix or not host.endswith(suffix):
        return None
    return host[:-len(suffix)].split('.')[0] or None


def find_by_name(cli_ctx, name: str, kind: str = 'auto', subscription=None) -> ServerRef:
    """The resource group of a server known only by name (from its FQDN), searched in the subscription."""
    for k in (['flexible', 'single'] if kind == 'auto' else [kind]):
        ops = client_for(cli_ctx, k, subscription).servers
        listing = getattr(ops, 'list_by_subscription', None) or ops.list
        for model in listing():
            if model.name.lower() == name.lower():
                group = model.id.split('/')[4]
                return ServerRef(resource_group=group, name=model.name, kind=k, subscription=subscription)
    raise ResourceNotFoundError(
        f"No server named '{name}' was found in the subscription.",
        recommendation='Check the host name, choose the subscription that holds the server with --subscription, '
                       'or pass the server name with its resource group.')
