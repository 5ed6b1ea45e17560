"""One dictionary for every label: each _("…") literal in the templates and each Chinese label
the Python code hands to the templates has an English entry."""

from __future__ import annotations

import re
from pathlib import Path

from agent.reports import charts, common, completion, risks
from agent.text import i18n
from agent.text.render import cn_number, duration_en, templates_dir

LITERAL = re.compile(r"""_\(\s*"([^"]+)"\s*\)|_\(\s*'([^']+)'\s*\)""")
# _("a" if x else "b") and table(["…", "…"]) headers pass literals through _() indirectly.
QUOTED = re.compile(r'"([^"]*[\u4e00-\u9fff][^"]*)"')


def _template_labels() -> set[str]:
    root = templates_dir()
    assert root is not None
    out: set[str] = set()
    for path in [*root.glob("*.html"), *root.glob("*.txt")]:
        text = path.read_text(encoding="utf-8")
        for m in LITERAL.finditer(text):
            out.add(m[1] or m[2])
        # Every quoted Chinese string inside a {{ }} or {% %} tag is a label too.
        for tag in re.findall(r"{[{%].*?[}%]}", text, flags=re.S):
            out.update(QUOTED.findall(tag))
    return out


def test_every_template_label_has_english() -> None:
    labels = _template_labels()
    assert len(labels) > 100
    # " 至 " is what period_text() looks for in Period.describe(), not a label.
    missing = sorted(x for x in labels if x not in i18n.EN and x != " 至 ")
    assert missing == []


def test_labels_from_code_have_english() -> None:
    code = [
        *common.TITLES.values(),
        *risks.SUGGESTION.values(),
        *risks.RATING_ORDER,
        *i18n.LEVEL_ZH.values(),
        *i18n.FAULT_TYPES,
        *i18n.WEEKDAYS_ZH,
        "每日新增故障（按级别）",
        "每月新增故障（按级别）",
        "各业务系统可用率",
        "资源使用率趋势",
        "可用率",
        "目标",
        "已用",
    ]
    source = Path(completion.__file__).read_text(encoding="utf-8")
    code += re.findall(r'"task": "([^"]+)"', source)
    assert len(code) > 30
    assert [x for x in code if x not in i18n.EN] == []
    assert charts.CJK_FONTS[0] == "Noto Sans CJK SC"


def test_translate_and_formats() -> None:
    assert i18n.translate("可用率", "zh") == "可用率"
    assert i18n.translate("可用率", "en") == "Availability"
    assert i18n.translate("未收录", "en") == "未收录"
    assert [cn_number(n) for n in (1, 9, 10, 11, 20, 23)] == ["一", "九", "十", "十一", "二十", "二十三"]
    assert duration_en(3725) == "1h 2m 5s" and duration_en(0) == "0s" and duration_en(86400) == "1d"
