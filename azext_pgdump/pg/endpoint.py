"""Where a server is and how to log in: what the data plane needs, whatever found it."""
import re
from dataclasses import dataclass, field, replace
from typing import Callable, Optional

# How long a server may stay silent before a connection to it is given up (--timeout): TCP keepalives
# probe an idle connection every KEEPALIVE_SECONDS, tcp_user_timeout bounds data the server never acknowledges.
DEFAULT_TIMEOUT = 600
KEEPALIVE_SECONDS = 10
# libpq learnt tcp_user_timeout in PostgreSQL 12; older utilities refuse a connection string that has it.
TCP_USER_TIMEOUT_SINCE = 12
# A backend notices that its client died only when it next talks to it: an index build or a COPY of ours would
# go on for minutes after a kill -9. From PostgreSQL 14 a user setting makes it check while a query runs.
CLIENT_CHECK_SINCE = 14
CLIENT_CHECK = 'client_connection_check_interval=2000'


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
    timeout: int = DEFAULT_TIMEOUT   # seconds a silent server is waited for (--timeout)
    client_major: int = 0            # the libpq of the utilities that use conninfo(); 0: psycopg's own (new)
    # Entra: a fresh token for every new connection (tokens expire during long runs); else `password`.
    password_source: Optional[Callable[[], str]] = field(default=None, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.label or f'{self.host}:{self.port}'

    def with_password(self, password: str) -> 'Endpoint':
        return replace(self, password=password)

    def with_password_source(self, source: Callable[[], str]) -> 'Endpoint':
        return replace(self, password=None, password_source=source)

    def current_password(self) -> Optional[str]:
        """What the next login uses: for Entra, a token that has not expired."""
        return self.password_source() if self.password_source else self.password

    def keepalives(self) -> dict:
        silence = max(int(self.timeout), KEEPALIVE_SECONDS)
        params = {'keepalives': '1', 'keepalives_idle': str(KEEPALIVE_SECONDS),
                  'keepalives_interval': str(KEEPALIVE_SECONDS),
                  'keepalives_count': str(max(1, silence // KEEPALIVE_SECONDS - 1))}
        if not self.client_major or self.client_major >= TCP_USER_TIMEOUT_SINCE:
            params['tcp_user_timeout'] = str(silence * 1000)
        return params

    def conninfo(self, dbname: str) -> str:
        """A libpq connection string without the password: safe for argv and for printing."""
        params = {'host': self.host, 'port': str(self.port), 'user': self.user, 'dbname': dbname,
                  'sslmode': self.sslmode, 'connect_timeout': str(min(self.connect_timeout, self.timeout)),
                  **self.keepalives()}
        if self.sslrootcert:
            params['sslrootcert'] = self.sslrootcert
        return ' '.join(f'{k}={_quote_conninfo(v)}' for k, v in params.items())

    def session_options(self, *settings: str) -> str:
        """PGOPTIONS for a utility's session: `settings`, and on 14+ the check for a client that died."""
        checks = [CLIENT_CHECK] if (self.major or 0) >= CLIENT_CHECK_SINCE else []
        return ' '.join(f'-c {s}' for s in [*settings, *checks])

    def lock_wait(self) -> str:
        """For lock_timeout and pg_dump --lock-wait-timeout (milliseconds: every version reads them)."""
        return str(int(self.timeout) * 1000)

    def secret_env(self) -> dict:
        """What a child process needs that must never be on its command line."""
        password = self.current_password()
        return {'PGPASSWORD': password} if password else {}
