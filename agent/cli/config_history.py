"""`sentinel config history`: the configuration versions the agent put in force, when, and what
changed from one to the next (the store's chained `config_versions`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from agent.cli.output import fmt_time, iso, print_json

if TYPE_CHECKING:
    from agent.config.schema import Config
    from agent.store.versions import ConfigVersion

_KEYED = ("name",)
"""Lists of objects with a name (checks, systems, windows) are compared by name, not position."""


def _flatten(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, Mapping):
        for k in sorted(node):
            yield from _flatten(node[k], f"{path}.{k}" if path else str(k))
    elif isinstance(node, list) and node and all(isinstance(x, Mapping) and "name" in x for x in node):
        for x in node:
            yield from _flatten({k: v for k, v in x.items() if k != "name"}, f"{path}[{x['name']}]")
            yield f"{path}[{x['name']}]", "<present>"
    else:
        yield path, node


def changes(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[str]:
    """What changed between two canonical configurations, one line per key path."""
    if old is None:
        return ["首个记录的配置 (first recorded configuration)"]
    a, b = dict(_flatten(old)), dict(_flatten(new))
    out = []
    for path in sorted(a.keys() | b.keys()):
        if path not in a:
            out.append(
                f"+ {path}"
                + ("" if b[path] == "<present>" else f" = {json.dumps(b[path], ensure_ascii=False)}")
            )
        elif path not in b:
            out.append(f"- {path}")
        elif a[path] != b[path]:
            out.append(
                f"~ {path}: {json.dumps(a[path], ensure_ascii=False)} → "
                f"{json.dumps(b[path], ensure_ascii=False)}"
            )
    # A whole object added or removed is one line, not one per field.
    whole = {p[2:] for p in out if p.endswith("]") and p[:2] in ("+ ", "- ")}
    return [p for p in out if not any(p[2:].startswith(w + ".") for w in whole)]


def distinct(versions: list[ConfigVersion]) -> list[tuple[ConfigVersion, int]]:
    """Versions as they changed: each with the number of starts that loaded it unchanged."""
    out: list[tuple[ConfigVersion, int]] = []
    for v in versions:
        if out and out[-1][0].hash == v.hash:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((v, 1))
    return out


def run(config: Config, args: argparse.Namespace) -> int:
    from agent.store.db import Store

    try:
        store = Store(config.storage.path, readonly=True)
    except FileNotFoundError as exc:
        print(f"sentinel: {exc}", file=sys.stderr)
        return 1
    try:
        versions = store.config_versions()
    finally:
        store.close()
    tz = config.site.tz
    rows = distinct(versions)
    entries: list[dict[str, Any]] = []
    prev: dict[str, Any] | None = None
    for i, (v, starts) in enumerate(rows):
        data = v.data()
        until = rows[i + 1][0].ts if i + 1 < len(rows) else None
        entries.append(
            {
                "version": v.id,
                "hash": v.hash,
                "in_force_from_ms": v.ts,
                "in_force_until_ms": until,
                "starts": starts,
                "changes": changes(prev, data),
            }
        )
        prev = data
    if args.json:
        print_json(
            {
                "versions": [
                    e
                    | {
                        "in_force_from": iso(e["in_force_from_ms"], tz),
                        "in_force_until": iso(e["in_force_until_ms"], tz),
                    }
                    for e in entries
                ]
            }
        )
        return 0
    if not entries:
        print("尚无记录的配置版本：代理启动时记录其生效的配置 (no configuration recorded yet)")
        return 0
    for e in entries:
        until_text = (
            "至今" if e["in_force_until_ms"] is None else f"至 {fmt_time(e['in_force_until_ms'], tz)}"
        )
        print(
            f"版本 {e['version']}  {fmt_time(e['in_force_from_ms'], tz)} {until_text}  "
            f"sha256 {e['hash'][:16]}  启动 {e['starts']} 次"
        )
        shown = e["changes"] if args.all or len(e["changes"]) <= 20 else e["changes"][:20]
        for line in shown:
            print(f"    {line}")
        if len(shown) < len(e["changes"]):
            print(f"    … 另有 {len(e['changes']) - len(shown)} 处变化（--all 显示全部）")
    return 0
