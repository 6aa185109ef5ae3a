import pprint

import pytest
from markupsafe import Markup

from services.router.transform_sizes import format_length, printf_length, text_length

LIMIT = 1 << 20

VALUES = [
    "plain", "", 'quo"te', "it's", "back\\slash", "new\nline", "\x00\x01\x7f", "caf\u00e9 \u2615", "\u200b\U000e0001",
    Markup("<b>"), 0, -7, 10 ** 300, 1.5, -1e308, float("inf"), True, None,
    [], [1, "a", None], ("x",), (1, 2), {"a": [1, {"b": "c"}], "d": None, 3: 4.5}, {"k": "v" * 100},
    [[[[["deep"]]]]], {"nested": {"x": {"y": ["it's", 'q"', "\n"]}}}, range(3, 10, 2), b"by\x00tes",
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_text_length_is_at_least_the_real_length_and_close_to_it(value) -> None:
    real = len(str(value))
    assert real <= text_length(value, LIMIT) <= real * 2 + 40
    if isinstance(value, (list, tuple, dict)):
        pretty = len(pprint.pformat(value))
        assert pretty <= text_length(value, LIMIT, pretty=True)


def test_a_wide_value_is_found_too_long_without_walking_all_of_it() -> None:
    big = "x" * 500_000
    wide = [[big] * 1000] * 1000  # a million references: 500 GB of text
    assert text_length(wide, LIMIT) > LIMIT
    assert text_length({"a": wide}, LIMIT) > LIMIT


@pytest.mark.parametrize("template, values", [
    ("%s and %s", ("a", "bb")), ("%5d|%-8.3f|%x", (42, 3.14159, 255)), ("%(a)s-%(b)10s", {"a": "x", "b": "y"}),
    ("%*s", (12, "z")), ("%s", [1, 2, 3]), ("%%", ()), ("%c%r", ("q", "it's")), ("%s", {"a": 1}),
])
def test_printf_length_is_an_upper_bound(template, values) -> None:
    assert len(template % values) <= printf_length(template, values, LIMIT)


@pytest.mark.parametrize("template, args, kwargs", [
    ("{} {}", ("a", "bb"), {}), ("{0}{0}{0}", ("abc",), {}), ("{x:>10}", (), {"x": "y"}),
    ("{:.3f}", (3.14159,), {}), ("{0:{1}}", ("a", 20), {}), ("{:,}", (10 ** 20,), {}),
])
def test_format_length_is_an_upper_bound(template, args, kwargs) -> None:
    assert len(template.format(*args, **kwargs)) <= format_length(template, args, kwargs, LIMIT)


def test_huge_widths_are_over_the_limit() -> None:
    assert printf_length("%100000000s", "x", LIMIT) > LIMIT
    assert printf_length("%(a)0100000000d", {"a": 1}, LIMIT) > LIMIT
    assert format_length("{:>100000000}", ("x",), {}, LIMIT) > LIMIT
    assert format_length("{0:>{1}}", ("x", 100_000_000), {}, LIMIT) > LIMIT
