"""PostgreSQL's own regression scripts (src/test/regress), fetched from Debian's source package of PostgreSQL.

What those scripts leave behind is the database pg_upgrade's test moves across majors: tables, types,
partitions, inheritance, rules, policies, domains, ranges, large objects, written by people who never saw
this project. `regress_dir()` fetches them once into the cache; `regressload.load_regression` loads them.

How: `apt-get source --download-only` of one pinned version, with a private sources list (deb-src lines
for bookworm on the mirror(s) this machine's own apt configuration names), private index and cache
folders, so the machine's apt state is never touched. apt checks the files against the archive's signed
index; we check the upstream tarball against the sha256 pinned here as well, then keep only the
regression scripts, their COPY data and the schedule.

When the pinned version leaves the archive (a bookworm point release replaces it), the error lists the
versions the archive has, with their tarballs' sha256: set VERSION, TARBALL and TARBALL_SHA256 to one of
them (check that sha256 against PostgreSQL's published one for that release) and drop the old cache entry."""
import hashlib
import re
import subprocess
import tarfile
from pathlib import Path

from .cache import built_once, ensure_cache

SOURCE_PACKAGE = "postgresql-15"
VERSION = "15.18-0+deb12u1"                      # bookworm's (Debian 12) point-release version
TARBALL = "postgresql-15_15.18.orig.tar.bz2"     # PostgreSQL 15.18 as released upstream
TARBALL_SHA256 = "11df0df97fe3ea4ba9a791faaf39cee1d2fe571e78885b5b55d8517d27c323b4"  # 23,405,115 bytes
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"  # signs bookworm on bookworm and later hosts
KEPT = re.compile(r"^[^/]+/src/test/regress/(sql/[^/]+\.sql|data/[^/]+|parallel_schedule)$")


def regress_dir() -> Path:
    """The cached folder holding sql/, data/ and parallel_schedule of the pinned release."""
    return built_once(ensure_cache() / "regress" / VERSION, _build,
                      done=lambda dest: (dest / "parallel_schedule").exists())


def _build(tmp: Path) -> Path:
    tarball = _download(tmp)
    out = tmp / "regress"
    with tarfile.open(tarball, "r:bz2") as tar:
        for member in tar:  # streamed: one pass over the 23 MB archive
            match = KEPT.match(member.name)
            if match and member.isfile():
                member.name = match.group(1)
                tar.extract(member, out, filter="data")
    for path in [out, *out.rglob("*")]:  # psql may run as another user than the one that fetched
        path.chmod(0o755 if path.is_dir() else 0o644)
    tarball.unlink()
    return out


def _download(tmp: Path) -> Path:
    apt = _private_apt(tmp)
    _run([*apt, "update"], tmp)
    downloads = tmp / "download"
    downloads.mkdir()
    proc = _run([*apt, "source", "--download-only", f"{SOURCE_PACKAGE}={VERSION}"], downloads, check=False)
    tarball = downloads / TARBALL
    if proc.returncode != 0 or not tarball.exists():
        raise RuntimeError(f"{SOURCE_PACKAGE} {VERSION} could not be fetched ({proc.stderr.strip()[-500:]}).\n"
                           f"The archive has: {_available(apt, tmp)}\nUpdate VERSION, TARBALL and TARBALL_SHA256 "
                           f"in {__file__}.")
    digest = _sha256(tarball)
    if digest != TARBALL_SHA256:
        raise RuntimeError(f"{TARBALL}: sha256 {digest}, expected {TARBALL_SHA256}")
    return tarball


def _private_apt(tmp: Path) -> list:
    """apt-get reading only our deb-src lines and keeping its index and cache under `tmp`."""
    parts, lists, cache = tmp / "sources.list.d", tmp / "lists", tmp / "cache"
    for folder in (parts, lists / "partial", cache / "archives" / "partial"):
        folder.mkdir(parents=True)
    (parts / "regress.sources").write_text(_deb_src_stanzas())
    # Sandbox user root: the temporary folder is private to root, so apt's _apt user could not write there.
    return ["apt-get", "-q", "-o", "Dir::Etc::SourceList=/dev/null", "-o", f"Dir::Etc::SourceParts={parts}",
            "-o", f"Dir::State::Lists={lists}", "-o", f"Dir::Cache={cache}", "-o", "APT::Sandbox::User=root"]


def _deb_src_stanzas() -> str:
    """deb-src for bookworm (and its security suite) at the Debian mirrors this machine's apt uses: the
    pinned version is bookworm's whatever Debian release the host runs."""
    stanzas = []
    for uri in sorted(_debian_uris()):
        suites = "bookworm-security" if uri.rstrip("/").endswith("-security") else "bookworm"
        stanzas.append(f"Types: deb-src\nURIs: {uri}\nSuites: {suites}\nComponents: main\n"
                       f"Signed-By: {DEBIAN_KEYRING}\n")
    if not stanzas:
        raise RuntimeError("no Debian archive in /etc/apt/sources.list*: cannot fetch PostgreSQL's sources")
    return "\n".join(stanzas)


def _debian_uris() -> set:
    """URIs of the Debian archive (a path ending in /debian or /debian-security) in the host's apt sources,
    both the deb822 (*.sources) and the one-line (*.list) forms."""
    texts = [p.read_text() for p in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]
             if p.is_file() and p.suffix in (".list", ".sources", "")]
    words = []
    for text in texts:
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("URIs:"):
                words += line[len("URIs:"):].split()
            elif line.startswith(("deb ", "deb-src ")):
                words += [w for w in line.split()[1:] if "://" in w][:1]
    return {w.rstrip("/") for w in words if re.search(r"/debian(-security)?/?$", w)}


def _available(apt: list, tmp: Path) -> str:
    """Each version of the source package in the archive, with its upstream tarball's sha256."""
    cache = [a.replace("apt-get", "apt-cache") for a in apt]
    out = _run([*cache, "showsrc", SOURCE_PACKAGE], tmp, check=False).stdout
    found = re.findall(r"^Version: (\S+)|^ ([0-9a-f]{64}) (\d+) (\S+\.orig\.tar\.\w+)$", out, flags=re.M)
    return "; ".join(" ".join(filter(None, f)) for f in found) or "nothing"


def _run(argv: list, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, check=check, timeout=600, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
