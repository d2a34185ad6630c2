"""Make a dump restorable by Azure's non-superuser admin: leave out what only concerns Azure's service
roles, and order what a non-superuser can only do in a certain order.

Left out (reported as "left out: Azure service object", never as errors):
- `ALTER SCHEMA public OWNER TO azure_superuser`: pg_dump 15+ writes it for every pre-15 source, whose
  `public` belongs to the bootstrap superuser; on the target `public` belongs to `pg_database_owner`.
- `ALTER DEFAULT PRIVILEGES FOR ROLE <service role> ...`: only that role (or a superuser) may run it.

Ordered: `ALTER ... OWNER TO r` needs r to have CREATE on the object's schema, which the schema's
GRANTs give; pg_dump writes those GRANTs last. A directory archive is restored in two passes (the
schemas and their privileges first, then the rest); a plain script has its ownership statements moved
after the schemas' GRANTs, before the other objects' ACLs (which may name the new owner).

Works on `pg_restore --list` output and, as a stream, on plain scripts (the `-- Name: ...; Type: ...`
header that pg_dump writes before every entry says what follows)."""
import re
from dataclasses import dataclass, field

from azext_pgdump.pg.roles import is_service_role

LEFT_OUT_REASON = 'Azure service object'
# A plain script from pg_dump 18 --statistics restores them with functions a server before 18 does not have.
STATISTICS = 'STATISTICS DATA'
STATISTICS_REASON = 'planner statistics: the target is older than PostgreSQL 18 (ANALYZE makes them there)'

ONLINE_PREFIX = 'azext_pgdump_'   # the names run --online gives what it makes (pg/online.py)

# pg_restore --list:  "7; 2615 2200 SCHEMA - public azure_superuser"
_LIST_LINE = re.compile(r'^(\d+); (\d+) (\d+) (.*)$')
_MULTIWORD_DESCS = ('MATERIALIZED VIEW DATA', 'SEQUENCE OWNED BY', 'DEFAULT ACL', 'TABLE DATA', 'FK CONSTRAINT',
                    'BLOB METADATA', 'SEQUENCE SET', 'MATERIALIZED VIEW', 'LARGE OBJECT', 'TEXT SEARCH',
                    'FOREIGN TABLE', 'FOREIGN DATA WRAPPER', 'USER MAPPING', 'EVENT TRIGGER', 'CHECK CONSTRAINT',
                    'PUBLICATION TABLE', 'PUBLICATION TABLES IN SCHEMA', 'STATISTICS DATA', 'SHELL TYPE',
                    'PROCEDURAL LANGUAGE', 'DATABASE PROPERTIES', 'POLICY', 'ROW SECURITY')
# Plain scripts: "-- Name: public; Type: SCHEMA; Schema: -; Owner: azure_superuser"
_HEADER = re.compile(rb'^-- (?:Data for |Statistics for )?Name: (.*); Type: (.*); Schema: (.*); Owner: (.*)$')
_OWNER_STATEMENT = re.compile(rb'^ALTER [A-Z ]+ .* OWNER TO .*;$')
_COPY_START = re.compile(rb'^COPY .* FROM stdin;$')
# What pg_dump writes between entries: the next header, a psql meta-command, or a session setting
# (`SET default_tablespace = '';` before a table) that prepares the next entry.
_ENTRY_BOUNDARIES = (b'\\', b'SET ', b'SELECT pg_catalog.set_config(')


def reason(item: str) -> str:
    """Why an entry (as left_out lists it) was left out."""
    return STATISTICS_REASON if item.startswith(STATISTICS + ' ') else LEFT_OUT_REASON


def left_out(desc: str, tag: str, owner: str) -> bool:
    """An entry whose only statement names an Azure service role that the target login cannot act as."""
    if not owner or not is_service_role(owner):
        return False
    return (desc == 'SCHEMA' and tag == 'public') or desc == 'DEFAULT ACL'


@dataclass
class TocEntry:
    line: str
    oid: int          # the object's oid in the source catalog
    desc: str
    schema: str
    tag: str
    owner: str

    @property
    def schema_first(self) -> bool:
        """Schemas and their privileges: restored before anything is given an owner."""
        return self.desc == 'SCHEMA' or (self.desc == 'ACL' and self.tag.startswith('SCHEMA '))

    def describe(self) -> str:
        return f'{self.desc} {self.tag} (owner {self.owner})'


def parse_list_line(line: str):
    match = _LIST_LINE.match(line)
    if not match:
        return None
    rest = match.group(4)
    desc = next((d for d in _MULTIWORD_DESCS if rest.startswith(d + ' ')), rest.split(' ', 1)[0])
    schema, _, tail = rest[len(desc) + 1:].partition(' ')
    tag, _, owner = tail.rpartition(' ')
    return TocEntry(line, int(match.group(3)), desc, schema, tag, owner)


@dataclass
class CleanedList:
    schemas: str                                   # pass 1: schemas and their privileges
    rest: str                                      # pass 2: everything else
    left_out: list = field(default_factory=list)   # what was left out, described
    refreshed: list = field(default_factory=list)  # materialized views the restore refreshes (schema.name)


# A populated materialized view is not copied: the restore refreshes it from the migrated tables, so one that was
# stale on the source (not refreshed since its tables changed) arrives current. The result names them.
MATVIEW_DATA = 'MATERIALIZED VIEW DATA'


def refreshed_views(names) -> dict:
    """For the result: the materialized views the restore refreshes, and what that means."""
    return {'refreshedViews': {'views': list(names), 'note': 'refreshed on the target from the migrated rows: a '
                               'view that was stale on the source (not refreshed since its tables changed) '
                               'is current now'}} if names else {}


def clean_list(text: str) -> CleanedList:
    schemas, rest, dropped, refreshed = [], [], [], []
    for line in text.splitlines():
        entry = parse_list_line(line)
        if entry is None:
            continue  # comments: pg_restore -L ignores them anyway
        if entry.desc.startswith('PUBLICATION') and ONLINE_PREFIX in entry.tag:
            continue   # a run --online's own publication, in the snapshot it made: the source's, not the target's
        if left_out(entry.desc, entry.tag, entry.owner):
            dropped.append(entry.describe())
        else:
            (schemas if entry.schema_first else rest).append(line)
            if entry.desc == MATVIEW_DATA:
                refreshed.append(f'{entry.schema}.{entry.tag}')
    return CleanedList(''.join(f'{x}\n' for x in schemas), ''.join(f'{x}\n' for x in rest), dropped, refreshed)


_OWNERS_COMMENT = (b"\n-- Owners, set after the schemas' GRANTs (azext_pgdump: a non-superuser restore needs that "
                   b"order)\n")


class PlainFilter:
    """The same for a plain script, as a stream: feed() bytes as they come, close() at the end.
    COPY data passes through unread but for its `\\.` terminator. An ownership statement is moved only
    when it is the last statement of its entry (the next line that is not blank opens the next entry's
    header), so a function body that happens to hold such a line is never touched."""

    def __init__(self, statistics: bool = True):
        self.statistics = statistics      # False: leave out pg_dump 18's statistics entries
        self.left_out: list = []
        self.refreshed: list = []         # materialized views the script refreshes (see MATVIEW_DATA)
        self._carry = b''
        self._at_line_start = True
        self._in_copy = False
        self._skipping = False
        self._pending_header: list = []   # "--" lines, until we know whether the entry is kept
        self._candidate = None            # an ownership line, until we see what follows it
        self._gap: list = []              # blank lines after the candidate
        self._deferred: list = []

    def feed(self, data: bytes) -> bytes:
        out, buf, pos = [], self._carry + data, 0
        while pos < len(buf):
            if self._in_copy:
                pos = self._copy_data(out, buf, pos)
                if self._in_copy:
                    break
                continue
            nl = buf.find(b'\n', pos)
            if nl < 0:
                break
            self._line(out, buf[pos:nl + 1])
            pos = nl + 1
        self._carry = buf[pos:]
        return b''.join(out)

    def _copy_data(self, out: list, buf: bytes, pos: int) -> int:
        """Pass COPY rows through; return where the rows (and their terminator) end."""
        if self._at_line_start and buf.startswith(b'\\.\n', pos):
            end = pos
        else:
            found = buf.find(b'\n\\.\n', pos)
            end = -1 if found < 0 else found + 1
        if end >= 0:
            self._emit(out, buf[pos:end + 3])
            self._in_copy, self._at_line_start = False, True
            return end + 3
        cut = buf.rfind(b'\n', pos) + 1
        if cut > pos:  # keep the last, partial line for the next chunk: it may be the terminator
            self._emit(out, buf[pos:cut])
            self._at_line_start = True
            return cut
        if len(buf) - pos > 3:  # a long line without its end yet: pass it on
            self._emit(out, buf[pos:])
            self._at_line_start = False
            return len(buf)
        return pos

    def close(self) -> bytes:
        out = []
        if self._carry:
            if self._in_copy:
                self._emit(out, self._carry)
            else:
                self._line(out, self._carry)
            self._carry = b''
        self._settle_candidate(out, deferred=True)
        out += self._pending_header
        self._pending_header = []
        out += self._owners()
        return b''.join(out)

    def _owners(self) -> list:
        """The deferred ownership statements, once: after the schemas' GRANTs (an owner needs CREATE on its
        schema), before any other object's ACL. An ACL that names the owner (REVOKE ... FROM pg_database_owner)
        applied before the owner is set would be merged into the old owner's rights by ALTER ... OWNER."""
        owners, self._deferred = self._deferred, []
        return [_OWNERS_COMMENT] + owners if owners else []

    def _emit(self, out: list, data: bytes) -> None:
        if not self._skipping and data:
            out.append(data)

    def _settle_candidate(self, out: list, deferred: bool) -> None:
        if self._candidate is not None:
            if deferred:
                self._deferred.append(self._candidate)
            else:
                out.append(self._candidate)
            out += self._gap
        self._candidate, self._gap = None, []

    def _line(self, out: list, line: bytes) -> None:
        text = line.rstrip(b'\r\n')
        if self._candidate is not None:
            if not text:
                self._gap.append(line)
                return
            self._settle_candidate(out, deferred=text == b'--' or text.startswith(_ENTRY_BOUNDARIES))
        if text == b'--':
            self._pending_header.append(line)
            return
        header = _HEADER.match(text)
        if header:
            name, desc, _schema, owner = (g.decode('utf-8', 'replace') for g in header.groups())
            if desc == 'ACL' and not name.startswith('SCHEMA '):
                out += self._owners()
            self._skipping = left_out(desc, name, owner) or (desc == STATISTICS and not self.statistics)
            if self._skipping:
                self.left_out.append(f'{desc} {name} (owner {owner})')
                self._pending_header = []
            elif desc == MATVIEW_DATA:
                self.refreshed.append(f'{_schema}.{name}')
        elif text.startswith((b'\\', b'-- PostgreSQL database dump complete')):
            self._skipping = False
        if self._skipping:
            return
        out += self._pending_header
        self._pending_header = []
        if _COPY_START.match(text):
            self._in_copy = True
        elif _OWNER_STATEMENT.match(text):
            self._candidate = line if line.endswith(b'\n') else line + b'\n'
            return
        out.append(line)
