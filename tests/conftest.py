"""Session fixtures: one set of real servers, one ARM emulator and one logged-in az for the whole run."""
from contextlib import ExitStack

import pytest

from tests.infra.world import start_world
from tests.migration_helpers import create_rich_source


@pytest.fixture(scope="session")
def world():
    with ExitStack() as stack:
        yield start_world(stack)


@pytest.fixture(scope="session")
def az(world):
    return world.az


@pytest.fixture(scope="session")
def rich_source(world):
    """Roles, the rich `appdb` and a second database on the Single Server (PostgreSQL 15), made once."""
    create_rich_source(world.single.pg)
    return world.single.pg
