"""Fault events become messages: routed by level, system, campus and event, rendered from the
templates under templates/notify/, serialised into outbox rows, and sent by the dispatcher.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from agent.config.schema import Config
from agent.faults.records import LEVEL_NAMES, Fault
from agent.notify.outbox import SendError
from agent.store import outbox
from agent.store.db import Store

SUBJECT_TAGS = {
    "opened": "故障",
    "flapping": "故障·抖动",
    "reminder": "提醒",
    "warning": "时限预警",
    "escalation": "升级",
    "recovered": "恢复",
    "reopened": "再次发生",
    "closed": "关闭",
}


def message_to_json(message: Any) -> str:
    """A Message as outbox JSON (binary parts base64), so the row alone can be re-sent."""

    def parts(items: Sequence[tuple[str, str, bytes]]) -> list[list[str]]:
        return [[a, b, base64.b64encode(c).decode()] for a, b, c in items]

    return json.dumps(
        {
            "subject": message.subject,
            "text": message.text,
            "html": message.html,
            "markdown": message.markdown,
            "level": message.level,
            "mention_mobiles": list(message.mention_mobiles),
            "attachments": parts(message.attachments),
            "inline_images": parts(message.inline_images),
            "headers": dict(message.headers),
        },
        ensure_ascii=False,
    )


def message_from_json(text: str) -> Any:
    from agent.notify import Message

    d = json.loads(text)

    def parts(items: Sequence[Sequence[str]]) -> tuple[tuple[str, str, bytes], ...]:
        return tuple((a, b, base64.b64decode(c)) for a, b, c in items)

    return Message(
        subject=d["subject"],
        text=d["text"],
        html=d.get("html"),
        markdown=d.get("markdown"),
        level=d.get("level"),
        mention_mobiles=tuple(d.get("mention_mobiles", ())),
        attachments=parts(d.get("attachments", ())),
        inline_images=parts(d.get("inline_images", ())),
        headers=d.get("headers", {}),
    )


class AlertPlanner:
    """Implements faults.Planner from the configuration's routes."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._env: Any = None

    def routes_for(self, event: str, fault: Fault) -> list[str]:
        channels: list[str] = []
        for route in self.config.notifications.routes:
            if event not in route.events or fault.level not in route.levels:
                continue
            if route.systems and fault.system not in route.systems:
                continue
            if route.campuses and fault.campus not in route.campuses:
                continue
            channels += [c for c in route.channels if c not in channels]
        return channels

    def render(self, event: str, fault: Fault, detail: Mapping[str, Any]) -> Any:
        from agent.notify import Message
        from agent.text.render import environment

        if self._env is None:
            # Jinja2 loads with the first alert, not at start: a quiet site never pays for it.
            self._env = environment()
        tz = self.config.site.tz
        text = self._env.get_template("notify/fault.txt").render(
            event=event,
            f=fault,
            detail=detail,
            level_names=LEVEL_NAMES,
            site_tz=tz,
            site_name=self.config.site.name,
            tz_name=self.config.site.timezone,
        )
        text = text.strip() + "\n"
        what = fault.system or (fault.checks[0] if fault.checks else "")
        # The impact already names the system ("HIS 不可用…"); other events name the system only.
        subject = f"【{fault.level_name}·{SUBJECT_TAGS[event]}】{fault.impact if event == 'opened' else what}"
        subject = " ".join(subject.split())[:120] + f" {fault.number}"
        html = self._env.get_template("notify/fault.html").render(
            event=event,
            f=fault,
            detail=detail,
            level_names=LEVEL_NAMES,
            site_tz=tz,
            site_name=self.config.site.name,
            tz_name=self.config.site.timezone,
            subject=subject,
        )
        return Message(
            subject=subject,
            text=text,
            html=html,
            markdown=f"### {subject}\n\n" + text.replace("\n", "\n\n"),
            level=fault.level,
            headers={"X-Sentinel-Fault": fault.number, "X-Sentinel-Event": event},
        )

    def __call__(self, event: str, fault: Fault, detail: Mapping[str, Any]) -> list[tuple[str, str, str]]:
        channels = self.routes_for(event, fault)
        if not channels:
            return []
        message = self.render(event, fault, detail)
        seq = detail.get("seq", detail.get("which", ""))
        out = []
        for ch in channels:
            key = f"{fault.number}:{event}:{seq}:{ch}"
            # A stable Message-ID per outbox row: a retry after an ambiguous SMTP timeout
            # arrives with the same ID, and mail clients drop the duplicate.
            msg_id = f"<{key.replace(':', '.')}@his-sentinel>"
            headers = {**dict(message.headers), "Message-ID": msg_id}
            out.append((ch, key, message_to_json(replace(message, headers=headers))))
        return out


def enqueue_closed(config: Config, store: Store, fault: Fault, now_ms: int) -> None:
    """Queue the notice of a fault a person closed (`sentinel faults close`).

    It goes through the outbox like every other notice, so the agent's dispatcher delivers it
    (and retries it); closing happens outside the FaultManager, so it is queued here.
    """
    if not config.notifications.routes or fault.maintenance is not None:
        return
    with store.tx() as db:
        for channel, key, payload in AlertPlanner(config)("closed", fault, {}):
            outbox.enqueue(
                db,
                created_ts=now_ms,
                dedup_key=key,
                channel=channel,
                event="closed",
                fault_id=fault.id,
                message=payload,
                next_attempt_ts=now_ms,
            )


def make_sender(channels: Mapping[str, Any]) -> Any:
    """The outbox's sender: channel name + message JSON -> receipt, errors as SendError."""
    from agent.notify import DeliveryError, send

    def sender(channel: str, payload: str) -> str:
        settings = channels.get(channel)
        if settings is None:
            raise SendError(f"channel {channel!r} is not configured", retryable=False)
        try:
            return str(send(settings, message_from_json(payload)))
        except DeliveryError as exc:
            raise SendError(str(exc), retryable=exc.retryable) from None

    return sender
