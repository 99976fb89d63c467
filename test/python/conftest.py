"""Fixtures for the binding's tests. Run from the repository root:
    /usr/bin/python3 -m pytest -q test/python
The library is found as the package finds it (QLIB_LIBRARY, then lib/)."""

import numpy as np
import pytest

from _helpers import qlib


def pytest_configure(config):
    config.addinivalue_line("markers", "nolib: the test does not need the shared library")


@pytest.fixture(autouse=True)
def library(request):
    """Tests need the shared library: fail loudly when it is missing rather
    than skip (a skipped suite would look green)."""
    if request.node.get_closest_marker("nolib"):
        return None
    try:
        return qlib.library_path()
    except qlib.LibraryNotFoundError as e:
        pytest.fail("%s\n(build it first: make)" % e, pytrace=False)


@pytest.fixture
def ctx():
    with qlib.Context(threads=2) as c:
        yield c


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
