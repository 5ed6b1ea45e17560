"""probes.perfdata: Nagios output and performance data, hand-written cases and properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probes.plugin.perfdata import PerfDatum, normalise, parse_output, parse_perfdata

# ------------------------------------------------------------------ hand-written cases


def test_check_disk_line() -> None:
    out = parse_output(
        "DISK OK - free space: / 80533MiB (77% inode=97%);"
        "| /=24498929664B;243497277849;257024904396;0;270552530944\n"
    )
    assert out.summary == "DISK OK - free space: / 80533MiB (77% inode=97%);"
    assert out.long_output == ()
    assert out.errors == ()
    assert out.perfdata == (
        PerfDatum("/", 24498929664.0, "B", "243497277849", "257024904396", 0.0, 270552530944.0),
    )


def test_check_load_trailing_semicolons_and_space() -> None:
    out = parse_output(
        "LOAD OK - total load average: 0.13, 0.27, 0.13|load1=0.130;50.000;60.000;0; "
        "load5=0.270;50.000;60.000;0; load15=0.130;50.000;60.000;0; "
    )
    assert [(d.label, d.value, d.uom, d.warn, d.crit, d.min, d.max) for d in out.perfdata] == [
        ("load1", 0.13, "", "50.000", "60.000", 0.0, None),
        ("load5", 0.27, "", "50.000", "60.000", 0.0, None),
        ("load15", 0.13, "", "50.000", "60.000", 0.0, None),
    ]


def test_quoted_labels_with_spaces_and_escaped_quotes() -> None:
    data, errors = parse_perfdata("'C:\\ used space'=12.5GB;80;90;0;100 'it''s'=3 'a=b'=1s")
    assert errors == []
    assert [(d.label, d.value, d.uom) for d in data] == [
        ("C:\\ used space", 12.5, "GB"),
        ("it's", 3.0, ""),
        ("a=b", 1.0, "s"),
    ]


@pytest.mark.parametrize("uom", ["s", "ms", "us", "%", "B", "KB", "MB", "GB", "TB", "c"])
def test_every_standard_uom_is_read(uom: str) -> None:
    data, errors = parse_perfdata(f"x=1.5{uom};;;0;")
    assert errors == []
    assert data == [PerfDatum("x", 1.5, uom, None, None, 0.0, None)]


def test_ranges_are_kept_as_text() -> None:
    (d,), errors = parse_perfdata("conn=7;@10:20;~:5;0;100")
    assert errors == []
    assert (d.warn, d.crit, d.min, d.max) == ("@10:20", "~:5", 0.0, 100.0)


def test_empty_and_undetermined_values_are_skipped_not_errors() -> None:
    data, errors = parse_perfdata("a= b=U;1;2 c=;;; d=4")
    assert errors == []
    assert [d.label for d in data] == ["d"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("novalue", "no '='"),
        ("x=abc", "not a number"),
        ("x=1.2.3", "not a number"),
        ("'unterminated=1", "unterminated"),
        ("'q'x=1", "no '=' after label"),
        ("=5", "empty label"),
        ("x=nan", "not a number"),
    ],
)
def test_malformed_items_are_reported_and_the_rest_kept(text: str, message: str) -> None:
    data, errors = parse_perfdata(f"{text} ok=1")
    assert len(errors) == 1 and message in errors[0]
    assert data[-1] == PerfDatum("ok", 1.0)


def test_decimal_comma_and_exponent() -> None:
    data, errors = parse_perfdata("a=0,5s b=1.5e3ms c=-2 d=+.25%")
    assert errors == []
    assert [(d.value, d.uom) for d in data] == [(0.5, "s"), (1500.0, "ms"), (-2.0, ""), (0.25, "%")]


def test_multi_line_long_output_with_perfdata_on_later_lines() -> None:
    text = (
        "HIS OK - 3 interfaces up | total=3;;;0\n"
        "挂号接口 up\n"
        "收费接口 up\n"
        "检验接口 up | lis_ms=12ms;100;200\n"
        "pacs_ms=40ms;100;200\n"
        "'emr queue'=5;;;0;\n"
    )
    out = parse_output(text)
    assert out.summary == "HIS OK - 3 interfaces up"
    assert out.long_output == ("挂号接口 up", "收费接口 up", "检验接口 up")
    assert [(d.label, d.value, d.uom) for d in out.perfdata] == [
        ("total", 3.0, ""),
        ("lis_ms", 12.0, "ms"),
        ("pacs_ms", 40.0, "ms"),
        ("emr queue", 5.0, ""),
    ]


def test_long_output_without_perfdata_and_crlf() -> None:
    out = parse_output("WARNING - 2 jobs late\r\njob A late\r\njob B late\r\n\r\n")
    assert out.summary == "WARNING - 2 jobs late"
    assert out.long_output == ("job A late", "job B late")
    assert out.perfdata == ()


def test_empty_output() -> None:
    out = parse_output("")
    assert (out.summary, out.long_output, out.perfdata, out.errors) == ("", (), (), ())


@pytest.mark.parametrize(
    ("uom", "value", "expected"),
    [
        ("B", 10.0, (10.0, "B")),
        ("KB", 2.0, (2048.0, "B")),
        ("kB", 2.0, (2048.0, "B")),
        ("MiB", 1.5, (1.5 * 1024**2, "B")),
        ("GB", 3.0, (3.0 * 1024**3, "B")),
        ("TB", 1.0, (1024.0**4, "B")),
        ("ms", 7.0, (7.0, "ms")),
        ("s", 0.5, (0.5, "s")),
        ("us", 9.0, (9.0, "us")),
        ("%", 99.0, (99.0, "%")),
        ("c", 12345.0, (12345.0, "c")),
        ("Mb", 1.0, (1.0, "Mb")),  # megabits are not bytes: left alone
        ("", 4.0, (4.0, "")),
    ],
)
def test_normalise(uom: str, value: float, expected: tuple[float, str]) -> None:
    assert normalise(PerfDatum("x", value, uom)) == expected


# ------------------------------------------------------------------ properties

_UOMS = ["", "s", "ms", "us", "%", "B", "KB", "MB", "GB", "TB", "c"]
_labels = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\x85"),
    min_size=1,
    max_size=20,
)
_numbers = st.floats(allow_nan=False, allow_infinity=False, width=64)
_ranges = st.one_of(
    st.none(),
    st.builds(str, _numbers.map(lambda f: round(f, 3))),
    st.sampled_from(["10:", "~:5", "@10:20", "5:10", "@~:0"]),
)


def _fmt_label(label: str) -> str:
    return "'" + label.replace("'", "''") + "'"


def _fmt(d: PerfDatum) -> str:
    parts = [f"{d.value!r}{d.uom}", d.warn or "", d.crit or ""]
    parts += ["" if d.min is None else repr(d.min), "" if d.max is None else repr(d.max)]
    return f"{_fmt_label(d.label)}={';'.join(parts)}"


_datums = st.builds(
    PerfDatum,
    label=_labels,
    value=_numbers,
    uom=st.sampled_from(_UOMS),
    warn=_ranges,
    crit=_ranges,
    min=st.none() | _numbers,
    max=st.none() | _numbers,
)


@given(st.lists(_datums, max_size=8), st.sampled_from([" ", "  ", "\n", " \n "]))
@settings(max_examples=300, deadline=None)
def test_round_trip(items: list[PerfDatum], sep: str) -> None:
    data, errors = parse_perfdata(sep.join(_fmt(d) for d in items))
    assert errors == []
    assert data == items


@given(
    st.lists(_datums, min_size=1, max_size=5),
    st.lists(st.text(alphabet="abc 挂号:-", max_size=15), max_size=4),
)
@settings(max_examples=150, deadline=None)
def test_output_round_trip_with_long_output(items: list[PerfDatum], long_lines: list[str]) -> None:
    first, rest = items[0], items[1:]
    text = "\n".join(["SUMMARY OK | " + _fmt(first), *long_lines, "| " + " ".join(_fmt(d) for d in rest)])
    out = parse_output(text)
    assert out.summary == "SUMMARY OK"
    assert out.perfdata == tuple(items)
    expected = [line.rstrip() for line in long_lines]
    while expected and not expected[-1]:
        expected.pop()  # trailing blank lines are not long output
    assert out.long_output == tuple(expected)


@given(st.text(max_size=200))
@settings(max_examples=500, deadline=None)
def test_parser_never_raises_and_values_are_finite(text: str) -> None:
    out = parse_output(text)
    assert "\n" not in out.summary
    for d in out.perfdata:
        assert math.isfinite(d.value)
        assert d.label


@given(_datums)
@settings(max_examples=200, deadline=None)
def test_normalised_sizes_are_bytes_and_other_units_unchanged(d: PerfDatum) -> None:
    value, unit = normalise(d)
    if d.uom in ("B", "KB", "MB", "GB", "TB"):
        assert unit == "B"
        factor = 1024.0 ** ["B", "KB", "MB", "GB", "TB"].index(d.uom)
        assert value == d.value * factor
    else:
        assert (value, unit) == (d.value, d.uom)
