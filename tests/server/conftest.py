"""The app client most tests/server files share (a file may define its own ``client``)."""

import pytest

from tests.server_support import serving


@pytest.fixture
def client(tmp_path, tiny_backbone):
    """A running app on the tiny backbone, with small input limits (8 inputs, 200 characters)."""
    with serving(tmp_path / "store", tiny_backbone, max_inputs_per_request=8, max_input_chars=200) as c:
        yield c
