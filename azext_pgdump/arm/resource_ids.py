"""Server references: which server the user named, before anything is asked of ARM."""
from dataclasses import dataclass
from typing import Optional

from azure.mgmt.core.tools import is_valid_resource_id, parse_resource_id

PROVIDER = 'microsoft.dbforpostgresql'
KIND_BY_TYPE = {'flexibleservers': 'flexible', 'servers': 'single'}


@dataclass(frozen=True)
class ServerRef:
    resource_group: str
    name: str
    kind: str = 'auto'              # 'auto', 'flexible' or 'single'
    subscription: Optional[str] = None


def parse_server_id(resource_id: str) -> ServerRef:
    """A ServerRef from a full ARM ID; ValueError says what is wrong with a malformed one."""
    if not is_valid_resource_id(resource_id):
        raise ValueError(f"'{resource_id}' is not a valid Azure resource ID.")
    parts = parse_resource_id(resource_id)
    kind = KIND_BY_TYPE.get(str(parts.get('type', '')).lower())
    if str(parts.get('namespace', '')).lower() != PROVIDER or kind is None or parts.get('child_name_1'):
        raise ValueError(f"'{resource_id}' is not the ID of an Azure Database for PostgreSQL server "
                         "(Microsoft.DBforPostgreSQL/flexibleServers or Microsoft.DBforPostgreSQL/servers).")
    return ServerRef(resource_group=parts['resource_group'], name=parts['name'], kind=kind,
                     subscription=parts['subscription'])
