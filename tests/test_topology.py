"""Who receives whom."""

from __future__ import annotations

import pytest

from sfu.topology import receives


@pytest.mark.parametrize(
    ("subscriber", "publisher", "gallery", "expected"),
    [
        ("participant", "host", False, True),
        ("participant", "host", True, True),
        ("host", "participant", False, True),
        ("host", "participant", True, True),
        ("participant", "participant", False, False),
        ("participant", "participant", True, True),
        ("host", "host", False, True),
    ],
)
def test_receives(subscriber: str, publisher: str, gallery: bool, expected: bool) -> None:
    assert receives(subscriber, publisher, gallery) is expected  # type: ignore[arg-type]
