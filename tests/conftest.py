"""Session fixtures: one set of real servers, one ARM emulator and one logged-in az for the whole run."""
from contextlib import ExitStack

import pytest

from tests.infra.world import start_world


@pytest.fixture(scope="session")
def world():
    with ExitStack() as stack:
        yield start_world(stack)


@pytest.fixture(scope="session")
def az(world):
    return world.az
