"""Locales the test servers run with, compiled once into a private folder their LOCPATH names.

Azure Single Servers ran on Windows: their databases carry locale names such as
`English_United States.1252`, which no Linux server has. A Single Server shaped source needs a locale
of exactly that name (UTF-8 inside, since those databases are UTF8), and Flexible shaped targets need
`en_US.utf8`, the locale Flexible Servers are initialised with. Nothing is installed on the system."""
import gzip
import subprocess
from pathlib import Path

from .cache import built_once, ensure_cache

WINDOWS_LOCALE = "English_United States.1252"
FLEXIBLE_LOCALE = "en_US.utf8"
_CHARMAPS = Path("/usr/share/i18n/charmaps")


def locpath() -> Path:
    return built_once(ensure_cache() / "locales-v1", _build,
                      done=lambda dest: (dest / WINDOWS_LOCALE / "LC_CTYPE").exists())


def _build(tmp: Path) -> Path:
    work = tmp / "locales"
    work.mkdir()
    _localedef("UTF-8", work / FLEXIBLE_LOCALE)
    _windows_named(work, tmp)
    for path in [work, *work.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return work


def _localedef(charmap: str, out: Path) -> None:
    # localedef exits 1 on mere warnings; the files are what counts.
    subprocess.run(["localedef", "-i", "en_US", "-f", charmap, str(out)], timeout=120,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not (out / "LC_CTYPE").exists():
        raise RuntimeError(f"localedef could not build {out.name}")


def _windows_named(work: Path, tmp: Path) -> None:
    """en_US with a UTF-8 charmap whose code set is named `1252`. glibc only loads `X.1252` when the
    locale's own code set name is `1252`; localedef refuses a name that starts with a digit, so the
    name is written as ISO1252 and then patched in the compiled files (same length, NUL padded).
    PostgreSQL does not know that code set, so it accepts the locale for a UTF8 database, as
    PostgreSQL on Windows does."""
    charmap = tmp / "UTF-8-named-1252"
    text = gzip.decompress((_CHARMAPS / "UTF-8.gz").read_bytes()).decode()
    charmap.write_text(text.replace("<code_set_name> UTF-8", "<code_set_name> ISO1252", 1)
                       .replace("% alias ISO-10646/UTF-8\n", ""))
    out = work / WINDOWS_LOCALE
    _localedef(str(charmap), out)
    for f in out.rglob("*"):
        if f.is_file():
            f.write_bytes(f.read_bytes().replace(b"ISO1252\x00", b"1252\x00\x00\x00\x00"))
