"""The article before a number follows how the number is spoken."""

import pytest

from engine.wording import a_number, article


@pytest.mark.parametrize(("n", "expected"), [
    (8, "an 8"), (11, "an 11"), (18, "an 18"), (80, "an 80"), (86, "an 86"), (800, "an 800"),
    (8000, "an 8000"), (11_000, "an 11000"), (18_500, "an 18500"), (80_000, "an 80000"), (8.5, "an 8.5"),
    (1, "a 1"), (12, "a 12"), (16, "a 16"), (24, "a 24"), (40, "a 40"), (48, "a 48"), (141, "a 141"),
    (180, "a 180"), (1800, "a 1800"), (110, "a 110"), (0, "a 0"), (-8, "a -8"),
])
def test_the_article_follows_the_spoken_number(n, expected):
    assert a_number(n) == expected


def test_the_number_can_be_written_its_own_way():
    assert a_number(11_000, "11,000") == "an 11,000"
    assert article(8.0) == "an"
