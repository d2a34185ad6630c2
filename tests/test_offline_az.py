"""The az fixture is real and private: our wheel is installed, and nothing leaves the machine."""
import json
import re
from pathlib import Path

SETUP = Path(__file__).resolve().parents[1] / "setup.py"


def test_extension_installed_from_wheel_in_private_dir(az):
    ext = json.loads(az.run("extension", "show", "--name", "pgdump", "-o", "json").stdout)
    version = re.search(r"VERSION = '([^']+)'", SETUP.read_text()).group(1)
    assert ext["version"] == version == "0.5.0" and ext["path"].startswith(az.env["AZURE_EXTENSION_DIR"])
    assert ext["extensionType"] == "whl" and ext["metadata"]["azext.isPreview"] is True


def test_logged_in_to_the_emulator(az, world):
    account = json.loads(az.run("account", "show", "-o", "json").stdout)
    assert account["environmentName"] == "AzextPgdumpLocal" and account["user"]["type"] == "servicePrincipal"


def test_no_request_left_the_machine(az, world):
    az.run("postgres", "dumprestore", "list-databases", "--ids", world.single.id)
    az.run("postgres", "dumprestore", "list-databases", "--ids", world.flexible.id)
    assert az.trap.hits == []
    # The SDKs really called the emulator, with the api-versions az 2.91 sends.
    versions = {(path.split("/Microsoft.DBforPostgreSQL/")[1].split("/")[0], query.get("api-version"))
                for _, path, query in world.emulator.requests if "/providers/Microsoft.DBforPostgreSQL/" in path}
    assert ("flexibleServers", "2026-04-01-preview") in versions
    assert ("servers", "2017-12-01") in versions


def test_the_trap_catches_an_outgoing_request(az):
    """Proof the trap is armed: a request for a public host goes to the trap, not out."""
    before = len(az.trap.hits)
    proc = az.run("rest", "--method", "get", "--url", "https://management.azure.com/subscriptions?api-version=2022-12-01",
                  check=False, timeout=120)
    assert proc.returncode != 0
    assert len(az.trap.hits) > before and "management.azure.com" in az.trap.hits[-1]
