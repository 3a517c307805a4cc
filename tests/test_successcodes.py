"""The success-code matcher grammar, checked against an independent model with hypothesis."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.lb.successcodes import SuccessCodesError, parse_success_codes

ALB = (200, 499)

codes = st.integers(min_value=200, max_value=499)
items = st.one_of(
    codes.map(lambda c: (str(c), {c})),
    st.tuples(codes, codes).map(lambda pair: (f"{min(pair)}-{max(pair)}", set(range(min(pair), max(pair) + 1)))),
)


@given(st.lists(items, min_size=1, max_size=5), st.integers(min_value=100, max_value=599))
def test_matches_exactly_the_listed_codes(parts: list[tuple[str, set[int]]], probe: int) -> None:
    text = ",".join(text for text, _ in parts)
    expected = set().union(*(allowed for _, allowed in parts))
    assert parse_success_codes(text, ALB).matches(probe) == (probe in expected)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("2xx", "neither a code nor a range"),
        ("200-", "neither a code nor a range"),
        ("300-200", "start is above its end"),
        ("200,abc", "'abc'"),
        ("500", "outside the 200-499"),
        ("199-210", "outside the 200-499"),
        ("200;201", "neither a code nor a range"),
    ],
)
def test_invalid_matchers_say_why(text: str, fragment: str) -> None:
    with pytest.raises(SuccessCodesError, match=fragment):
        parse_success_codes(text, ALB)


@given(st.text(max_size=20))
def test_arbitrary_text_never_raises_anything_else(text: str) -> None:
    with contextlib.suppress(SuccessCodesError):
        parse_success_codes(text, (200, 599))


def test_nlb_and_grpc_ranges() -> None:
    assert parse_success_codes("200-599", (200, 599)).matches(503)
    assert parse_success_codes("0-5", (0, 99)).matches(0)
    with pytest.raises(SuccessCodesError):
        parse_success_codes("200", (0, 99))
