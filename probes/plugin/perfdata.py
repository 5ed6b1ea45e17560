"""Nagios plugin output: summary line, long output and performance data.

Format (Nagios plugin development guidelines)::

    TEXT OUTPUT | PERFDATA
    LONG TEXT LINE 1
    LONG TEXT LINE 2 | PERFDATA LINE 2
    PERFDATA LINE 3

The first line's text before ``|`` is the summary. Later lines are long output until one of
them contains ``|``; its text after the ``|`` and every line after it are performance data.

One performance datum is ``'label'=value[UOM];[warn];[crit];[min];[max]``, separated by
spaces. Labels with spaces are quoted; a quote inside a quoted label is written ``''``.
An empty value or ``U`` (undetermined) is skipped, not an error. warn/crit are Nagios
ranges (``10``, ``10:``, ``~:5``, ``@10:20``) and are kept as text: the plugin has already
judged them in its exit code.

Units: sizes (B, KB, MB, GB, TB and the KiB/MiB/... spellings) become bytes, unit ``B``, with
1024 steps — that is what monitoring-plugins mean (check_disk ``-u MB`` prints MiB), and it
makes thresholds on sizes comparable across plugins. Every other UOM (``s``, ``ms``, ``us``,
``%``, ``c`` for counters, or anything unknown) is kept as the metric unit with the value
unchanged, so a threshold is written in the plugin's own terms.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["PerfDatum", "PluginOutput", "normalise", "parse_output", "parse_perfdata"]

_NUMBER = r"[-+]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][-+]?\d+)?"
_VALUE = re.compile(rf"^({_NUMBER})([^\d;\s]*)$")
_PLAIN_NUMBER = re.compile(rf"^{_NUMBER}$")

# Exact spellings only: a lower-case "b" or "Mb" may mean bits, which is not a size.
_BYTE_FACTORS: dict[str, float] = {
    "B": 1.0,
    **dict.fromkeys(("KB", "kB", "KiB"), 1024.0),
    **dict.fromkeys(("MB", "MiB"), 1024.0**2),
    **dict.fromkeys(("GB", "GiB"), 1024.0**3),
    **dict.fromkeys(("TB", "TiB"), 1024.0**4),
}


@dataclass(frozen=True, slots=True)
class PerfDatum:
    label: str
    value: float
    uom: str = ""
    warn: str | None = None
    crit: str | None = None
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True, slots=True)
class PluginOutput:
    summary: str
    long_output: tuple[str, ...]
    perfdata: tuple[PerfDatum, ...]
    errors: tuple[str, ...]
    """Performance data items that could not be parsed, with the reason."""


def _number(text: str) -> float:
    # Plugins running under a non-C locale sometimes print a decimal comma.
    return float(text.replace(",", "."))


def normalise(datum: PerfDatum) -> tuple[float, str]:
    """(value, unit) for a metric: sizes in bytes, every other UOM as printed."""
    factor = _BYTE_FACTORS.get(datum.uom)
    if factor is not None:
        return datum.value * factor, "B"
    return datum.value, datum.uom


def _read_label(text: str, i: int) -> tuple[str | None, int, str | None]:
    """Label starting at text[i]; returns (label, index after '=', error)."""
    n = len(text)
    if text[i] == "'":
        parts: list[str] = []
        j = i + 1
        while True:
            k = text.find("'", j)
            if k == -1:
                # Lose only this item, not everything after it.
                return None, _skip_token(text, i), "unterminated quoted label"
            parts.append(text[j:k])
            if text.startswith("''", k):
                parts.append("'")
                j = k + 2
                continue
            i = k + 1
            break
        label = "".join(parts)
        if i >= n or text[i] != "=":
            return None, _skip_token(text, i), f"no '=' after label {label!r}"
        return label, i + 1, None
    j = i
    while j < n and text[j] != "=" and not text[j].isspace():
        j += 1
    if j >= n or text[j] != "=":
        return None, j, f"no '=' in {text[i:j]!r}"
    return text[i:j], j + 1, None


def _skip_token(text: str, i: int) -> int:
    while i < len(text) and not text[i].isspace():
        i += 1
    return i


def _optional_number(text: str) -> float | None:
    text = text.strip()
    if not _PLAIN_NUMBER.match(text):
        return None
    return _number(text)


def parse_perfdata(text: str) -> tuple[list[PerfDatum], list[str]]:
    """Parse one or more lines of performance data. Never raises; bad items are reported."""
    data: list[PerfDatum] = []
    errors: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            break
        label, i, error = _read_label(text, i)
        if error is not None or label is None:
            errors.append(error or "bad label")
            continue
        end = _skip_token(text, i)
        raw = text[i:end]
        i = end
        if not label:
            errors.append(f"empty label in '={raw}'")
            continue
        fields = raw.split(";")
        value_text = fields[0]
        if value_text in ("", "U"):
            continue  # no value this time: the plugin says so, not an error
        m = _VALUE.match(value_text)
        if not m:
            errors.append(f"{label}: value {value_text!r} is not a number")
            continue
        fields += [""] * (5 - len(fields))
        data.append(
            PerfDatum(
                label=label,
                value=_number(m.group(1)),
                uom=m.group(2),
                warn=fields[1] or None,
                crit=fields[2] or None,
                min=_optional_number(fields[3]),
                max=_optional_number(fields[4]),
            )
        )
    return data, errors


def parse_output(text: str) -> PluginOutput:
    """Split a plugin's stdout into summary, long output lines and performance data."""
    lines = text.replace("\r\n", "\n").split("\n")
    summary, _, perf_text = lines[0].partition("|")
    perf_parts = [perf_text]
    long_output: list[str] = []
    in_perf = False
    for line in lines[1:]:
        if in_perf:
            perf_parts.append(line)
        elif "|" in line:
            text_part, _, perf_part = line.partition("|")
            if text_part.strip():
                long_output.append(text_part.rstrip())
            perf_parts.append(perf_part)
            in_perf = True
        else:
            long_output.append(line.rstrip())
    while long_output and not long_output[-1]:
        long_output.pop()
    data, errors = parse_perfdata("\n".join(perf_parts))
    return PluginOutput(summary.strip(), tuple(long_output), tuple(data), tuple(errors))
