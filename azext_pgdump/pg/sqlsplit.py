"""Split a SQL script into statements, honouring quotes, dollar quotes and comments.

Enough of PostgreSQL's lexer for the scripts pg_dumpall writes: identifiers and strings may hold
semicolons, newlines and the names of Azure roles, so a line-based filter cannot be trusted."""
import re
from dataclasses import dataclass

_DOLLAR = re.compile(r'\$([A-Za-z_][A-Za-z_0-9]*)?\$')


@dataclass(frozen=True)
class Statement:
    text: str            # without the trailing semicolon
    meta: bool = False   # a psql meta-command line such as \connect or \restrict


def split(script: str) -> list:
    out, i, start, n = [], 0, 0, len(script)
    while i < n:
        c = script[i]
        at_line_start = script[start:i].strip() == ''
        if c == '\\' and at_line_start:
            end = script.find('\n', i)
            end = n if end < 0 else end
            out.append(Statement(script[i:end].strip(), meta=True))
            i = start = end + 1
            continue
        if script.startswith('--', i):
            end = script.find('\n', i)
            i = n if end < 0 else end + 1
            if at_line_start:
                start = i
            continue
        if script.startswith('/*', i):
            end = script.find('*/', i + 2)
            i = n if end < 0 else end + 2
            continue
        if c in '\'"':
            i = _end_of_quoted(script, i, c)
            continue
        if c == '$':
            m = _DOLLAR.match(script, i)
            if m:
                end = script.find(m.group(0), m.end())
                i = n if end < 0 else end + len(m.group(0))
                continue
        if c == ';':
            text = script[start:i].strip()
            if text:
                out.append(Statement(text))
            start = i + 1
        i += 1
    tail = script[start:].strip()
    if tail and not all(line.strip().startswith('--') or not line.strip() for line in tail.splitlines()):
        out.append(Statement(tail))
    return out


def _end_of_quoted(script: str, i: int, quote: str) -> int:
    j = i + 1
    while True:
        j = script.find(quote, j)
        if j < 0:
            return len(script)
        if script.startswith(quote * 2, j):  # doubled quote inside
            j += 2
            continue
        return j + 1


_TOKEN = re.compile(r'"(?:[^"]|"")*"|\'(?:[^\']|\'\')*\'|[^\s,;()]+|[,()]')


def tokens(text: str) -> list:
    """Words, quoted identifiers and string literals of one statement (comments already removed)."""
    return _TOKEN.findall(text)


def ident(token: str) -> str:
    """The name a token denotes: unquoted names fold to lower case, quoted ones are taken as written."""
    if token.startswith('"'):
        return token[1:-1].replace('""', '"')
    return token.lower()
