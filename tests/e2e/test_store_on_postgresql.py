"""The store's test suite (tests/unit/test_store.py) on a real PostgreSQL server: every test there
that takes `open_db` runs here again, on a fresh database of its own."""

import inspect

import pytest
from unit import test_store as cases

for _name, _test in vars(cases).items():
    if _name.startswith("test_") and "open_db" in inspect.signature(_test).parameters:
        globals()[_name] = _test


@pytest.fixture
def open_db(postgres):
    yield from cases.store_opener(postgres.new_database())
