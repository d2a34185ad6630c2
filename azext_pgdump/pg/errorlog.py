"""Read a restore's errors.log: count the errors, and tell Azure's harmless noise from real failures."""
import re
from dataclasses import dataclass, field
from pathlib import Path

# (class name, pattern, why it is harmless). Anything else that says ERROR or FATAL is a real failure.
HARMLESS = [
    ('extension-owned-by-service', re.compile(r'must be owner of extension'),
     'extensions belong to the Azure service; their comments and ownership cannot be changed'),
    ('public-schema-owner', re.compile(r'must be owner of schema public'),
     'the public schema of a new database belongs to the service'),
    ('public-schema-exists', re.compile(r'schema "public" already exists'),
     'every new database already has a public schema'),
    ('unknown-parameter', re.compile(r'unrecognized configuration parameter "transaction_timeout"'),
     'a SET written by a newer pg_dump for a setting the target does not have'),
]
_ERROR_LINE = re.compile(r'\b(ERROR|FATAL):\s+(.*)')
# pg_restore's own failures (a truncated archive, a dead worker) are lower case and carry no ERROR:.
_TOOL_ERROR = re.compile(r'^pg_restore: error: (?!could not execute query)(.*)')


@dataclass
class ErrorReport:
    total: int = 0
    harmless: int = 0
    real: int = 0
    by_class: dict = field(default_factory=dict)
    real_samples: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {'total': self.total, 'harmless': self.harmless, 'real': self.real, 'byClass': self.by_class,
                'realSamples': self.real_samples}


def classify_line(message: str) -> str:
    for name, pattern, _ in HARMLESS:
        if pattern.search(message):
            return name
    return 'real'


def read(path: Path, samples: int = 5) -> ErrorReport:
    report = ErrorReport()
    if not path.exists():
        return report
    with path.open(encoding='utf-8', errors='replace') as log:
        for line in log:
            match = _ERROR_LINE.search(line)
            tool = None if match else _TOOL_ERROR.match(line)
            if not match and not tool:
                continue
            report.total += 1
            kind = classify_line(match.group(2)) if match else 'real'
            report.by_class[kind] = report.by_class.get(kind, 0) + 1
            if kind == 'real':
                report.real += 1
                if len(report.real_samples) < samples:
                    report.real_samples.append(line.strip())
            else:
                report.harmless += 1
    return report
