"""Pure logic beside the real-server tests: tool choice, file names, quoting."""
import pytest

from azext_pgdump.pg import tools, workdir
from azext_pgdump.pg.endpoint import Endpoint


def fake_toolset(directory, version, suffix=""):
    directory.mkdir(parents=True)
    for program in tools.PROGRAMS:
        script = directory / (program + suffix)
        script.write_text(f"#!/bin/sh\necho '{program} (PostgreSQL) {version} (Fake 1)'\n")
        script.chmod(0o755)
    return directory


def test_newest_fitting_toolset_is_chosen(tmp_path):
    found = [t for d in (fake_toolset(tmp_path / "a", "14.2"), fake_toolset(tmp_path / "b", "17.1"),
                         fake_toolset(tmp_path / "c", "16.3")) for t in tools.discover(str(d))]
    assert [t.major for t in found] == [14, 17, 16]
    assert tools.choose(found, 16).version == "17.1"
    # With a target, the fitting set closest to its major: 16 -> 16 meets no setting only 17's utilities write.
    assert tools.choose(found, 16, closest_to=16).version == "16.3"
    assert tools.choose(found, 14, closest_to=14).version == "14.2"
    assert tools.choose(found, 17, closest_to=16).version == "17.1"   # the source is 17: 17 is the least
    with pytest.raises(tools.ToolsError, match="must be version 18 or newer.*14.2.*17.1"):
        tools.choose(found, 18)


def test_incomplete_toolset_is_ignored(tmp_path):
    d = fake_toolset(tmp_path / "a", "17.1")
    (d / "pg_restore").unlink()
    assert tools.discover(str(d)) == []


def test_windows_finds_the_installers_folders_and_exe_programs(tmp_path):
    """EDB's Windows installer puts each major under Program Files\\PostgreSQL\\<major>\\bin, programs with
    .exe; both Program Files folders (64 and 32 bit) are searched; a folder without the .exe names is not a
    toolset on Windows. (The fake programs are shell scripts: Windows itself cannot run here.)"""
    x64, x86 = tmp_path / "Program Files", tmp_path / "Program Files (x86)"
    fake_toolset(x64 / "PostgreSQL" / "16" / "bin", "16.4", ".exe")
    fake_toolset(x86 / "PostgreSQL" / "17" / "bin", "17.2", ".exe")
    fake_toolset(x64 / "PostgreSQL" / "15" / "bin", "15.1")   # no .exe: not what Windows runs
    env = {"ProgramW6432": str(x64), "ProgramFiles": str(x64), "ProgramFiles(x86)": str(x86), "PATH": ""}
    found = tools.discover(system="win32", environ=env)
    assert sorted(t.major for t in found) == [16, 17]
    chosen = tools.choose(found, 16)
    assert chosen.path("pg_dump") == str(x86 / "PostgreSQL" / "17" / "bin" / "pg_dump.exe")
    assert tools.search_globs("win32", {})[:2] == ["C:\\Program Files/PostgreSQL/*/bin",
                                                   "C:\\Program Files (x86)/PostgreSQL/*/bin"]


def test_utilities_on_path_come_first(tmp_path):
    fake_toolset(tmp_path / "bin", "18.1")
    assert tools.candidate_dirs(system="linux", environ={"PATH": str(tmp_path / "bin")})[0] == tmp_path / "bin"


@pytest.mark.parametrize("name,expected", [("appdb", "appdb"), ("a-b.c_1", "a-b.c_1")])
def test_plain_database_names_are_file_names(name, expected):
    assert workdir.file_stem(name) == expected


def test_awkward_database_names_get_safe_distinct_file_names():
    names = ['crm "ü" db', "crm 'ü' db", "../etc", "a/b", ".hidden"]
    stems = [workdir.file_stem(n) for n in names]
    assert len(set(stems)) == len(stems)
    assert all("/" not in s and not s.startswith(".") and s.isascii() for s in stems)


def test_conninfo_never_holds_the_password_and_quotes_values():
    ep = Endpoint(host="h", user="o'neil@srv", password="s3cret")
    info = ep.conninfo("my db")
    assert "s3cret" not in info and "s3cret" not in repr(ep)
    assert "user='o\\'neil@srv'" in info and "dbname='my db'" in info
    assert ep.secret_env() == {"PGPASSWORD": "s3cret"}


def test_cmd_quoting_under_delayed_expansion():
    from azext_pgdump.pg.render import cmd_quote, ps_quote
    assert cmd_quote('a "b" 100%') == '"a \\"b\\" 100%%"'
    assert cmd_quote("hi! ^x") == '"hi^! ^^x"'  # ! and ^ only need carets in a token holding a !
    assert cmd_quote("a^b") == '"a^b"'
    assert ps_quote("it's $HOME") == "'it''s $HOME'"


def test_rule_names_carry_their_age_and_only_ours_have_one():
    import time
    from azext_pgdump.arm.firewall import new_rule_name, rule_age_minutes
    assert rule_age_minutes(new_rule_name()) < 1
    hour_ago = time.strftime("%Y%m%d%H%M%S", time.gmtime(time.time() - 3600))
    assert 59 < rule_age_minutes(f"azext-pgdump-{hour_ago}-abcdef") < 61
    assert rule_age_minutes("office") is None and rule_age_minutes("azext-pgdump-manual") is None


def test_timeout_bounds_every_connection_and_old_libpq_gets_no_tcp_user_timeout():
    info = Endpoint(host="h", user="u", timeout=60).conninfo("db")
    assert "keepalives_idle=10" in info and "keepalives_count=5" in info and "tcp_user_timeout=60000" in info
    assert "tcp_user_timeout" not in Endpoint(host="h", user="u", client_major=11).conninfo("db")
    assert "connect_timeout=5" in Endpoint(host="h", user="u", timeout=5).conninfo("db")
    assert Endpoint(host="h", user="u", timeout=3).lock_wait() == "3000"


def test_entra_tokens_are_renewed_before_they_expire():
    from azext_pgdump.arm.entra import TokenSource
    now = [1000.0]

    class Issuer(TokenSource):
        def _fetch(self):
            return f"token-{self.fetched}", now[0] + 3600

    source = Issuer(cli_ctx=None, clock=lambda: now[0])
    assert source() == source() == "token-0"       # cached while it has life left
    now[0] += 3600 - 301
    assert source() == "token-0"
    now[0] += 2                                     # under five minutes left: a new one
    assert source() == "token-1" and source.fetched == 2
    endpoint = Endpoint(host="h", user="u").with_password_source(source)
    assert endpoint.secret_env() == {"PGPASSWORD": "token-1"} and "token" not in repr(endpoint)


def test_copy_estimate_converges_on_the_rate_so_far():
    from azext_pgdump.pg.stream import Estimate
    now = [0.0]
    eta = Estimate(400 << 20, clock=lambda: now[0])
    assert eta.left_seconds() is None and str(eta) == "0% of 400 MB"
    eta.add(1 << 20)
    assert eta.left_seconds() is None and str(eta) == "0% of 400 MB"   # too little done to judge the rate
    now[0] = 10.0
    eta.add(99 << 20)
    assert eta.left_seconds() == 30.0 and str(eta) == "25% of 400 MB, about 30s left"
    eta.add(300 << 20)
    assert str(eta) == "100% of 400 MB"
