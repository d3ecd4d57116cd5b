"""The app restricts the user's own models (entry points) to its server setting, process-wide: put the CLI's
rule (any) back after each app test, so tests that run later in the same process build entry points freely."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _entry_points_unrestricted_afterwards():
    yield
    from designer.networks import sources

    sources._allowed_entry_points = None
    sources.resolve.cache_clear()
