"""What the servers hold: versions, databases, roles. Read with psycopg, as the migration's logins."""
from dataclasses import dataclass

import psycopg

from azext_pgdump.pg.endpoint import CLIENT_CHECK, CLIENT_CHECK_SINCE, Endpoint

APPLICATION_NAME = 'azext_pgdump'
# Databases that exist on every Azure server and are never migrated.
NEVER_MIGRATED = frozenset({'azure_maintenance', 'azure_sys', 'template0', 'template1'})


class ConnectError(Exception):
    """A server could not be reached or refused the login; the message is libpq's, without secrets."""


@dataclass(frozen=True)
class Database:
    name: str
    encoding: str
    collate: str
    ctype: str
    locale_provider: str = 'c'   # 'c' (libc), 'i' (ICU) or 'b' (builtin)
    icu_locale: str = ''
    owner: str = ''


def connect(endpoint: Endpoint, dbname: str = 'postgres', replication: bool = False) -> psycopg.Connection:
    """`replication`: a logical replication connection (replication=database), which can create a slot."""
    extra = {'replication': 'database'} if replication else {}
    try:
        # Named, so that a DBA (or a test) can tell our sessions in pg_stat_activity. A lock held by someone
        # else (an ALTER TABLE on the source) is waited for as long as --timeout, not for ever.
        # The same session settings the utilities get (Endpoint.session_options), when the server's major is known.
        conn = psycopg.connect(endpoint.conninfo(dbname), password=endpoint.current_password(), autocommit=True,
                               application_name=APPLICATION_NAME,
                               options=endpoint.session_options(f'lock_timeout={endpoint.lock_wait()}'), **extra)
    except psycopg.OperationalError as err:
        raise ConnectError(f'Cannot connect to {endpoint.name} as {endpoint.user}: {str(err).strip()}') from err
    if not endpoint.major and conn.info.server_version >= CLIENT_CHECK_SINCE * 10000:
        conn.execute(f'SET {CLIENT_CHECK}')  # the major was known only now; an older server refuses the name
    return conn


def server_major(conn) -> int:
    return int(conn.execute('SHOW server_version_num').fetchone()[0]) // 10000


def databases(conn) -> list:
    """Every database the login may connect to, with what `createdb` needs to re-create it."""
    major = server_major(conn)
    provider = 'datlocprovider' if major >= 15 else "'c'"
    icu = ('coalesce(datlocale, \'\')' if major >= 17 else 'coalesce(daticulocale, \'\')') if major >= 15 else "''"
    rows = conn.execute(
        f'SELECT datname, pg_encoding_to_char(encoding), datcollate, datctype, {provider}::text, {icu}, '
        'pg_get_userbyid(datdba) FROM pg_database WHERE datallowconn AND has_database_privilege(datname, \'CONNECT\') '
        'ORDER BY datname').fetchall()
    return [Database(*row) for row in rows]


def user_databases(conn) -> list:
    return [d for d in databases(conn) if d.name not in NEVER_MIGRATED]


def database_names(conn) -> set:
    return {r[0] for r in conn.execute('SELECT datname FROM pg_database').fetchall()}


def role_names(conn) -> set:
    return {r[0] for r in conn.execute('SELECT rolname FROM pg_roles').fetchall()}


def locales(conn) -> set:
    """The libc locales a server can create databases with (what initdb found, and what its databases use)."""
    return {r[0] for r in conn.execute(
        "SELECT collcollate FROM pg_collation WHERE collcollate IS NOT NULL UNION SELECT datcollate FROM pg_database "
        "UNION SELECT datctype FROM pg_database UNION SELECT 'C' UNION SELECT 'POSIX'").fetchall()}


# Built with ICU, initdb imports ICU collations (provider 'i'). Not the one 16+ define in every build: `unicode`
# is in pg_collation whether ICU is there or not ("ICU is not supported in this build" when it is not).
HAS_ICU = "SELECT EXISTS (SELECT 1 FROM pg_collation WHERE collprovider = 'i' AND collname <> 'unicode')"


def has_icu(conn) -> bool:
    return bool(conn.execute(HAS_ICU).fetchone()[0])


def can_read_pg_authid(conn) -> bool:
    """Azure's admin cannot: pg_dumpall then needs --no-role-passwords."""
    return bool(conn.execute("SELECT has_table_privilege('pg_authid', 'SELECT')").fetchone()[0])


def databases_bytes(conn, names=None) -> int:
    """What the databases take on disk: the ones named, or every one the login may size (the service's own
    databases among them: they take the disk too)."""
    rows = conn.execute(
        "SELECT coalesce(sum(pg_database_size(datname)), 0) FROM pg_database WHERE datallowconn "
        "AND has_database_privilege(datname, 'CONNECT') AND (%s::text[] IS NULL OR datname = ANY(%s::text[]))",
        (names, names)).fetchone()
    return int(rows[0])


def wal_bytes(conn):
    """The WAL the server keeps now; None when the login may not list pg_wal (pg_monitor)."""
    try:
        with conn.transaction():
            return int(conn.execute('SELECT coalesce(sum(size), 0) FROM pg_ls_waldir()').fetchone()[0])
    except psycopg.Error:
        return None
