"""Where downloaded PostgreSQL builds and the test virtualenv live between runs."""
import os
from pathlib import Path

# World-readable on purpose: the PostgreSQL servers run as an unprivileged user who must
# be able to execute the binaries kept here (root's home is not traversable by them).
CACHE = Path(os.environ.get("AZEXT_PGDUMP_CACHE", "/var/tmp/azext-pgdump"))


def ensure_cache() -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    CACHE.chmod(0o755)
    return CACHE
