"""The base of every configuration model, in a module of its own so the sections defined next
to their logic (working hours, maintenance windows, channels) can use it without importing
the whole configuration."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

FAULT_LEVELS = {1: "一级", 2: "二级", 3: "三级", 4: "四级"}
FAULT_TYPES = ("核心系统类", "硬件网络类", "数据安全类", "综合类")


class Model(BaseModel):
    # hide_input_in_errors: pydantic would otherwise quote an inline secret back in its error.
    model_config = ConfigDict(
        frozen=True, extra="forbid", arbitrary_types_allowed=True, hide_input_in_errors=True
    )
