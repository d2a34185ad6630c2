"""Pure logic beside the real-server tests: tool choice, file names, quoting."""
import pytest

from azext_pgdump.pg import tools, workdir
from azext_pgdump.pg.endpoint import Endpoint


def fake_toolset(directory, version):
    directory.mkdir()
    for program in tools.PROGRAMS:
        script = directory / program
        script.write_text(f"#!/bin/sh\necho '{program} (PostgreSQL) {version} (Fake 1)'\n")
        script.chmod(0o755)
    return directory


def test_newest_fitting_toolset_is_chosen(tmp_path):
    found = [t for d in (fake_toolset(tmp_path / "a", "14.2"), fake_toolset(tmp_path / "b", "17.1"),
                         fake_toolset(tmp_path / "c", "16.3")) for t in tools.discover(str(d))]
    assert [t.major for t in found] == [14, 17, 16]
    assert tools.choose(found, 16).version == "17.1"
    with pytest.raises(tools.ToolsError, match="must be version 18 or newer.*14.2.*17.1"):
        tools.choose(found, 18)


def test_incomplete_toolset_is_ignored(tmp_path):
    d = fake_toolset(tmp_path / "a", "17.1")
    (d / "pg_restore").unlink()
    assert tools.discover(str(d)) == []


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
