"""Sizes as users type them: '512MB', '1.5GB', '0'."""
import re

from azure.cli.core.azclierror import InvalidArgumentValueError

_UNITS = {'': 1, 'B': 1, 'KB': 1 << 10, 'MB': 1 << 20, 'GB': 1 << 30, 'TB': 1 << 40}


def parse(text) -> int:
    """'512MB', '1.5GB', '0' -> bytes."""
    match = re.fullmatch(r'\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?B?)\s*', str(text), re.I)
    if not match:
        raise InvalidArgumentValueError(f'{text!r} is not a size.', recommendation='For example 512MB or 2GB.')
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])
