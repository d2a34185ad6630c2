"""The steps `run` does itself instead of starting a program: cleaning the roles file and the dumps of
what Azure's service owns. Each has an az command that does the same (clean-roles, clean-dump), which is
what show-commands prints for it."""
import os
import sys
from pathlib import Path
from typing import Optional

from azext_pgdump.pg import dumpclean, roles
from azext_pgdump.pg.steps import Step


def run_step(step: Step) -> dict:
    """What the in-process step did, for the report: the roles' clean-up, or what a dump's left out."""
    action = step.action
    if action.name == 'clean-roles':
        return clean_roles_file(Path(action.option('input')), Path(action.option('output-file')),
                                Path(action.option('existing-roles')), action.option('target-login'),
                                bool(action.option('may-exist')))
    if action.name == 'clean-dump':
        optional = {k: Path(action.option(k)) if action.option(k) else None for k in ('output-file', 'schemas-file')}
        left_out, refreshed = clean_dump_file(Path(action.option('input')), optional['output-file'],
                                              optional['schemas-file'], statistics=not action.option('no-statistics'))
        return {'leftOut': [{'object': x, 'reason': dumpclean.reason(x)} for x in left_out],
                **dumpclean.refreshed_views(refreshed)}
    raise ValueError(f'no in-process action {action.name!r}')


def clean_roles_file(raw: Path, output: Path, existing_roles: Path, login: str, may_exist: bool = False) -> dict:
    """What the roles-clean step does, in `run` and in `az postgres dumprestore clean-roles`."""
    existing = {line.strip() for line in existing_roles.read_text(encoding='utf-8-sig').splitlines()} - {''} \
        if existing_roles else set()
    cleaned = roles.clean(raw.read_text(encoding='utf-8'), existing, login, may_exist)
    write_private(output, cleaned.sql.encode('utf-8'))  # role definitions can carry password hashes
    return {'created': cleaned.created, 'skippedExisting': cleaned.skipped_existing,
            'skippedService': cleaned.skipped_service, 'needPassword': cleaned.need_password,
            'droppedStatements': cleaned.dropped, 'file': str(output)}


def clean_dump_file(source: Path, output: Optional[Path], schemas: Optional[Path], statistics: bool = True) -> tuple:
    """What the restore-clean step does, in `run` and in `az postgres dumprestore clean-dump`: a
    pg_restore list is split in two passes (schemas first), a plain script streamed through the filter.
    Returns what was left out."""
    head = source.read_bytes()[:4096] if str(source) != '-' else b''
    if head.startswith(b';') or b'\n; Selected TOC Entries' in head:
        cleaned = dumpclean.clean_list(source.read_text(encoding='utf-8'))
        for path, text in ((output, cleaned.rest), (schemas, cleaned.schemas)):
            if path is not None:
                write_private(path, text.encode())
        return cleaned.left_out, cleaned.refreshed
    cleaner = dumpclean.PlainFilter(statistics)
    with (sys.stdin.buffer if str(source) == '-' else source.open('rb')) as src, \
            _open_output(output) as out:
        while chunk := src.read(1 << 20):
            out.write(cleaner.feed(chunk))
        out.write(cleaner.close())
    return cleaner.left_out, cleaner.refreshed


def write_private(path: Path, data: bytes) -> None:
    """Dumps, lists and role files hold data or password hashes: private from their first byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, 'wb') as f:
        f.write(data)


def _open_output(path: Optional[Path]):
    if path is None or str(path) == '-':
        return os.fdopen(os.dup(sys.stdout.fileno()), 'wb')
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 'wb')
