"""Read a restore's errors log (pg_restore's stderr, or psql's with --echo-errors) and judge it.

Every line is accounted for: an error with the statement it came from, context for that error
(DETAIL, HINT, LINE, the statement's continuation), a warning or notice, pg_restore's own summary,
or, failing all of these, an unexplained line. An error is harmless only when both its message and
its statement match a known case (a harmless message on another statement is real), and a non-zero
exit that nothing harmless explains fails the restore: the log can never turn a failure into success."""
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

# (class, message, statement it must come from, why it is harmless)
HARMLESS = [
    ('extension-owned-by-service', re.compile(r'^must be owner of extension \S+$'),
     re.compile(r'^COMMENT ON EXTENSION ', re.I),
     'extensions belong to the Azure service; their comments cannot be changed'),
    ('public-schema-owner', re.compile(r'^must be owner of schema public$'),
     re.compile(r'^COMMENT ON SCHEMA public IS ', re.I),
     'the public schema of a new database belongs to the service'),
    ('public-schema-exists', re.compile(r'^schema "public" already exists$'),
     re.compile(r'^CREATE SCHEMA public;', re.I),
     'every new database already has a public schema'),
    ('unknown-parameter', re.compile(r'^unrecognized configuration parameter "transaction_timeout"$'),
     re.compile(r'^SET transaction_timeout = ', re.I),
     'a SET written by a newer pg_dump for a setting the target does not have'),
]
# A restore that lost its server: always real, whatever the exit code.
_CONNECTION_LOST = re.compile(r'server closed the connection unexpectedly|SSL SYSCALL error|connection to server '
                              r'was lost|could not receive data from server|terminating connection due to|'
                              r'no connection to the server|could not send data to server')
# Searched, not anchored: pg_restore's parallel workers share one stderr, and their lines can interleave
# ("pg_restore: error: pg_restore:could not execute query: ERROR:  ..."). An "ERROR:" inside other text is
# then taken for an error, which can only fail a restore, never pass one.
_SERVER = re.compile(r'\b(ERROR|FATAL|PANIC|WARNING|NOTICE|INFO):\s+(.*)$')
_STATEMENT = re.compile(r'^(?:Command was: |(?:psql:.*?:\d+: )?STATEMENT:\s+)(.*)$')
_TOOL_ERROR = re.compile(r'^(?:pg_restore|psql): error: (.*)$')
_CONTEXT = re.compile(r'^(?:psql:.*?:\d+: )?(?:DETAIL|HINT|CONTEXT|LINE \d+|QUERY|LOCATION):|^\s*\^\s*$|'
                      r'^pg_restore: (?:while PROCESSING TOC|from TOC entry|while INITIALIZING|'
                      r'while FINALIZING)|^pg_restore: warning: errors ignored on restore: \d+$')
_NO_PRIVILEGES = re.compile(r'^no privileges (were|could be) (granted|revoked) for ')


@dataclass
class ErrorReport:
    total: int = 0          # errors (ERROR, FATAL, the utility's own)
    harmless: int = 0
    real: int = 0
    warnings: int = 0       # WARNING lines (for example "no privileges were granted")
    unexplained: int = 0    # lines that are none of the above, nor context
    by_class: dict = field(default_factory=dict)
    real_samples: list = field(default_factory=list)
    unexplained_samples: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {'total': self.total, 'harmless': self.harmless, 'real': self.real, 'warnings': self.warnings,
                'unexplained': self.unexplained, 'byClass': self.by_class, 'realSamples': self.real_samples,
                **({'unexplainedSamples': self.unexplained_samples} if self.unexplained_samples else {})}

    def failed(self, exit_code: int) -> bool:
        """Real errors fail; so does a non-zero exit that only harmless errors could explain and
        nothing else muddies (pg_restore exits 1 when it ignored any error)."""
        if self.real:
            return True
        return exit_code != 0 and (self.unexplained > 0 or self.harmless == 0)

    def first_problem(self) -> str:
        return (self.real_samples or self.unexplained_samples or [''])[0]


def classify(message: str, statement: Optional[str]) -> str:
    if _CONNECTION_LOST.search(message):
        return 'connection-lost'
    for name, msg, stmt, _ in HARMLESS:
        if msg.search(message) and statement is not None and stmt.search(statement.strip()):
            return name
    return 'real'


@dataclass
class _Record:
    message: str
    statement: Optional[str] = None
    kind: str = 'error'       # 'error' or 'tool'


def _records(lines):
    """Group the log into error records; yield ('record', r), ('warning', msg) or ('unexplained', line)."""
    current, in_statement = None, False
    for raw in lines:
        line = raw.rstrip('\n')
        if not line.strip():
            in_statement = False
            continue
        statement = _STATEMENT.match(line)
        server, tool = (None, None) if statement else (_SERVER.search(line), _TOOL_ERROR.match(line))
        if server and server.group(1) in ('ERROR', 'FATAL', 'PANIC'):
            if current:
                yield 'record', current
            current, in_statement = _Record(server.group(2)), False
        elif statement and current is not None and current.statement is None:
            current.statement, in_statement = statement.group(1), True
        elif tool and not line.startswith('pg_restore: error: could not execute query'):
            if current:
                yield 'record', current
            current, in_statement = _Record(tool.group(1), kind='tool'), False
        elif server and server.group(1) == 'WARNING':
            in_statement = False
            yield 'warning', server.group(2)
        elif server or _CONTEXT.match(line):
            in_statement = False  # NOTICE, INFO, DETAIL, HINT, LINE n, the summary: context
        elif in_statement:
            current.statement += '\n' + line
        elif _CONNECTION_LOST.search(line):
            if current:
                yield 'record', current
            current = _Record(line, kind='tool')
        else:
            yield 'unexplained', line
    if current:
        yield 'record', current


def read(path: Path, samples: int = 5) -> ErrorReport:
    report = ErrorReport()
    if not path.exists():
        return report
    with path.open(encoding='utf-8', errors='replace') as log:
        for kind, item in _records(log):
            if kind == 'warning':
                report.warnings += 1
                name = 'no-privileges' if _NO_PRIVILEGES.search(item) else 'warning'
                report.by_class[name] = report.by_class.get(name, 0) + 1
                continue
            if kind == 'unexplained':
                report.unexplained += 1
                if len(report.unexplained_samples) < samples:
                    report.unexplained_samples.append(item.strip())
                continue
            report.total += 1
            name = 'real' if item.kind == 'tool' and not _CONNECTION_LOST.search(item.message) \
                else classify(item.message, item.statement)
            report.by_class[name] = report.by_class.get(name, 0) + 1
            if name in ('real', 'connection-lost'):
                report.real += 1
                if len(report.real_samples) < samples:
                    sample = item.message + (f' (statement: {item.statement.strip()[:200]})' if item.statement else '')
                    report.real_samples.append(sample)
            else:
                report.harmless += 1
    return report
