"""Clean a `pg_dumpall --roles-only` script for an Azure target, on parsed statements.

On Azure the target login is not a superuser: Azure's service roles must not be re-created, the
attributes only a superuser may set (even the negative ones) must go, roles that exist already are
skipped, and grants made "by" a role we cannot act as lose their GRANTED BY clause."""
import re
from dataclasses import dataclass, field

from psycopg import sql

from azext_pgdump.pg.sqlsplit import ident, split, tokens

SERVICE_ROLES = frozenset({'azure_superuser', 'azure_pg_admin', 'azuresu', 'replication'})
SUPERUSER_ONLY = frozenset({'SUPERUSER', 'NOSUPERUSER', 'BYPASSRLS', 'NOBYPASSRLS', 'REPLICATION',
                            'NOREPLICATION'})


def is_service_role(name: str) -> bool:
    return name in SERVICE_ROLES or name.startswith('pg_')


@dataclass
class CleanedRoles:
    sql: str
    created: list = field(default_factory=list)          # roles the script creates
    skipped_existing: list = field(default_factory=list)  # roles that exist on the target
    skipped_service: list = field(default_factory=list)   # Azure service roles and pg_* roles
    need_password: list = field(default_factory=list)     # login roles created without a password
    dropped: list = field(default_factory=list)           # statements left out, for the report


def _role_of(words: list, position: int) -> str:
    return ident(words[position]) if len(words) > position else ''


def _granted_roles(words: list) -> tuple:
    """GRANT a, b TO c, d [WITH ...] [GRANTED BY x] -> ({a, b}, {c, d})."""
    upper = [w.upper() for w in words]
    to = upper.index('TO')
    end = next((i for i, w in enumerate(upper[to + 1:], to + 1) if w in ('WITH', 'GRANTED')), len(words))
    granted = {ident(w) for w in words[1:to] if w != ','}
    grantees = {ident(w) for w in words[to + 1:end] if w != ','}
    return granted, grantees


def clean(script: str, existing_roles, target_login: str, may_exist: bool = False) -> CleanedRoles:
    """`may_exist`: a resumed run's roles file, whose roles the interrupted run may have created already."""
    existing = {r for r in existing_roles} | {target_login}
    result = CleanedRoles(sql='')
    skip = set()
    keep, logins, with_password = [], set(), set()
    for stmt in split(script):
        if stmt.meta:  # \restrict and \unrestrict belong to the dump that wrote them, not to this file
            continue
        words = tokens(stmt.text)
        head = [w.upper() for w in words[:3]]
        if head[:2] == ['CREATE', 'ROLE']:
            name = _role_of(words, 2)
            if is_service_role(name):
                skip.add(name)
                result.skipped_service.append(name)
                continue
            if name in existing:
                skip.add(name)
                result.skipped_existing.append(name)
                continue
            result.created.append(name)
            if may_exist:
                keep.append(_unless_exists(stmt.text))
                continue
        elif head[:2] == ['ALTER', 'ROLE'] or head[:3] == ['COMMENT', 'ON', 'ROLE'] or \
                head[:2] == ['SECURITY', 'LABEL']:
            name = _role_of(words, 3 if head[0] == 'COMMENT' else 2)
            if head[0] == 'SECURITY':
                result.dropped.append(stmt.text)
                continue
            if name in skip or is_service_role(name):
                continue
            if head[0] == 'ALTER' and len(words) > 3 and words[3].upper() == 'WITH':
                kept = [w for w in words if w.upper() not in SUPERUSER_ONLY]
                if any(w.upper() == 'LOGIN' for w in kept):
                    logins.add(name)
                if any(w.upper() == 'PASSWORD' for w in kept):
                    with_password.add(name)
                stmt_text = _rewrite(stmt.text, words, kept)
                keep.append(stmt_text)
                continue
        elif head[:1] == ['GRANT'] and 'TO' in [w.upper() for w in words]:
            granted, grantees = _granted_roles(words)
            if any(is_service_role(r) for r in granted | grantees):
                result.dropped.append(stmt.text)
                continue
            keep.append(re.sub(r'\s+GRANTED\s+BY\s+("(?:[^"]|"")*"|\S+)\s*$', '', stmt.text, flags=re.I))
            continue
        keep.append(stmt.text)
    result.need_password = sorted(logins - with_password)
    # Since PostgreSQL 16 the role that creates a role may not act as it unless granted, and the
    # restore must set owners to these roles: make the target login a member of each role it creates.
    keep += [sql.SQL('GRANT {} TO {}').format(sql.Identifier(r), sql.Identifier(target_login)).as_string(None)
             for r in result.created]
    result.sql = ''.join(s + ';\n' for s in keep)
    return result


def _unless_exists(create: str) -> str:
    """CREATE ROLE has no IF NOT EXISTS: a role already there is left as it is (its ALTER ROLE follows)."""
    return f'DO $azext$BEGIN {create}; EXCEPTION WHEN duplicate_object THEN NULL; END$azext$'


def _rewrite(text: str, words: list, kept: list) -> str:
    if len(kept) == len(words):
        return text
    if [w.upper() for w in kept[-1:]] == ['WITH']:
        kept = kept[:-1]
    return ' '.join(kept).replace(' ,', ',')
