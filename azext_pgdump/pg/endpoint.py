"""Where a server is and how to log in: what the data plane needs, whatever found it."""
import re
from dataclasses import dataclass, field, replace
from typing import Optional

# libpq keepalives: long restores otherwise lose idle connections behind NAT and load balancers.
KEEPALIVES = {'keepalives': '1', 'keepalives_idle': '10', 'keepalives_interval': '10', 'keepalives_count': '60'}


def _quote_conninfo(value: str) -> str:
    """libpq keyword=value quoting, only where needed: the commands stay readable when printed."""
    if re.fullmatch(r'[A-Za-z0-9_.@:/+-]+', value):
        return value
    return "'" + value.replace('\\', '\\\\').replace("'", "\\'") + "'"


@dataclass(frozen=True)
class Endpoint:
    host: str
    user: str
    port: int = 5432
    password: Optional[str] = field(default=None, repr=False)
    sslmode: str = 'require'
    sslrootcert: Optional[str] = None
    kind: str = 'postgres'           # 'flexible', 'single' or 'postgres' (not in Azure)
    label: str = ''                  # how messages name the server
    major: Optional[int] = None      # as ARM reports it; confirmed on connection
    connect_timeout: int = 15

    @property
    def name(self) -> str:
        return self.label or f'{self.host}:{self.port}'

    def with_password(self, password: str) -> 'Endpoint':
        return replace(self, password=password)

    def conninfo(self, dbname: str) -> str:
        """A libpq connection string without the password: safe for argv and for printing."""
        params = {'host': self.host, 'port': str(self.port), 'user': self.user, 'dbname': dbname,
                  'sslmode': self.sslmode, 'connect_timeout': str(self.connect_timeout), **KEEPALIVES}
        if self.sslrootcert:
            params['sslrootcert'] = self.sslrootcert
        return ' '.join(f'{k}={_quote_conninfo(v)}' for k, v in params.items())

    def secret_env(self) -> dict:
        """What a child process needs that must never be on its command line."""
        return {'PGPASSWORD': self.password} if self.password else {}
