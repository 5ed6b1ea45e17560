"""probes.boundary: what a probe reports when its own code raises."""

from __future__ import annotations

from probes.base import CheckResult, ProbeContext, Status, Stopwatch
from probes.boundary import crash_text, run_guarded


def test_a_raising_body_is_unknown_with_one_bounded_scrubbed_line() -> None:
    secrets: list[str] = []

    def body(sw: Stopwatch) -> CheckResult:
        secrets.append("s3cr3t-token")  # revealed during the run, as http and plugin do
        raise RuntimeError("server said:\n  bad token s3cr3t-token " + "x" * 500)

    result = run_guarded(ProbeContext("c", 5.0), "probe error", body, secrets=secrets, details={"url": "u"})
    assert result.status is Status.UNKNOWN
    assert result.summary.startswith("probe error: RuntimeError: server said: bad token *** xxx")
    assert "s3cr3t" not in result.summary and "\n" not in result.summary
    assert len(result.summary) == 200 and result.summary.endswith("…")
    assert result.details == {"url": "u"}


def test_a_body_that_returns_is_passed_through() -> None:
    ok = run_guarded(ProbeContext("c", 5.0), "x", lambda sw: sw.result(Status.OK, "正常"))
    assert (ok.status, ok.summary) == (Status.OK, "正常")


def test_crash_text_keeps_a_short_message_whole() -> None:
    assert crash_text("日志检查出错", KeyError("offset")) == "日志检查出错: KeyError: 'offset'"
