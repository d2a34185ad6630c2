"""A database's own properties, which pg_dump leaves out unless it creates the database itself: its
grants (GRANT/REVOKE ... ON DATABASE), its settings (ALTER DATABASE ... SET, ALTER ROLE ... IN DATABASE
... SET) and its comment. Read from the source's shared catalogs, written back as SQL on the target
after the restore (a setting such as default_transaction_read_only must not apply to the restore)."""
from dataclasses import asdict, dataclass, field

from psycopg import sql

from azext_pgdump.pg.roles import is_service_role

# Settings whose value is a list: pg_db_role_setting keeps `"$user", public`, which must be written
# back as separate elements (one quoted string would become a single schema named `"$user", public`).
LIST_SETTINGS = frozenset({'search_path', 'temp_tablespaces', 'session_preload_libraries',
                           'local_preload_libraries'})

_ACL_DIFF = """
WITH d AS (SELECT datdba, coalesce(datacl, acldefault('d', datdba)) AS acl, acldefault('d', datdba) AS def
           FROM pg_database WHERE datname = %(db)s),
     now AS (SELECT (aclexplode(acl)).* FROM d), def AS (SELECT (aclexplode(def)).* FROM d),
     diff AS ((SELECT 'GRANT' AS op, grantee, privilege_type, is_grantable FROM now
               EXCEPT SELECT 'GRANT', grantee, privilege_type, is_grantable FROM def)
              UNION ALL
              (SELECT 'REVOKE', grantee, privilege_type, is_grantable FROM def
               EXCEPT SELECT 'REVOKE', grantee, privilege_type, is_grantable FROM now))
SELECT op, CASE WHEN grantee = 0 THEN '' ELSE pg_get_userbyid(grantee) END, privilege_type, is_grantable
FROM diff ORDER BY op DESC, 2, 3"""
_SETTINGS = """
SELECT coalesce(pg_get_userbyid(NULLIF(s.setrole, 0)), ''), unnest(s.setconfig)
FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = %(db)s ORDER BY 1"""
_COMMENT = "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %(db)s"


@dataclass
class DatabaseProps:
    acl: list = field(default_factory=list)        # [op, grantee ('' = PUBLIC), privilege, grantable]
    settings: list = field(default_factory=list)   # [role ('' = every role), 'name=value']
    comment: str = ''

    def as_dict(self) -> dict:
        return asdict(self)


def read(conn, database: str) -> DatabaseProps:
    args = {'db': database}
    return DatabaseProps(acl=[list(r) for r in conn.execute(_ACL_DIFF, args).fetchall()],
                         settings=[list(r) for r in conn.execute(_SETTINGS, args).fetchall()],
                         comment=(conn.execute(_COMMENT, args).fetchone() or [None])[0] or '')


def split_list_setting(value: str) -> list:
    """`"$user", public` -> ['$user', 'public'] (double quotes protect commas and spaces)."""
    items, current, quoted, i = [], '', False, 0
    while i < len(value):
        ch = value[i]
        if ch == '"':
            if quoted and value[i + 1:i + 2] == '"':
                current += '"'
                i += 1
            else:
                quoted = not quoted
        elif ch == ',' and not quoted:
            items.append(current.strip())
            current = ''
        else:
            current += ch
        i += 1
    items.append(current.strip())
    return [x for x in items if x]


def _setting(name: str, value: str) -> sql.Composable:
    values = split_list_setting(value) if name in LIST_SETTINGS else [value]
    return sql.SQL('SET {} TO {}').format(sql.SQL('.').join(sql.Identifier(p) for p in name.split('.')),
                                          sql.SQL(', ').join(sql.Literal(v) for v in values))


def statements(props: DatabaseProps, database: str, acl: bool = True) -> tuple:
    """(SQL statements for the target, what was left out because it names an Azure service role)."""
    db, out, left_out = sql.Identifier(database), [], []
    for op, grantee, privilege, grantable in (props.acl if acl else []):
        if grantee and is_service_role(grantee):
            left_out.append(f'{op} {privilege} ON DATABASE {database} {"TO" if op == "GRANT" else "FROM"} {grantee}')
            continue
        who = sql.Identifier(grantee) if grantee else sql.SQL('PUBLIC')
        if op == 'GRANT':
            out.append(sql.SQL('GRANT {} ON DATABASE {} TO {}{}').format(
                sql.SQL(privilege), db, who, sql.SQL(' WITH GRANT OPTION' if grantable else '')))
        else:
            out.append(sql.SQL('REVOKE {} ON DATABASE {} FROM {}').format(sql.SQL(privilege), db, who))
    for role, setting in props.settings:
        name, _, value = setting.partition('=')
        if role and is_service_role(role):
            left_out.append(f'ALTER ROLE {role} IN DATABASE {database} SET {name}')
            continue
        target = sql.SQL('ALTER ROLE {} IN DATABASE {} ').format(sql.Identifier(role), db) if role \
            else sql.SQL('ALTER DATABASE {} ').format(db)
        out.append(target + _setting(name, value))
    if props.comment:
        out.append(sql.SQL('COMMENT ON DATABASE {} IS {}').format(db, sql.Literal(props.comment)))
    return [s.as_string(None) for s in out], left_out
