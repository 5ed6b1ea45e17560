#!/usr/bin/env python3
"""HIS Sentinel evidence archive verifier — Python standard library only (3.9+).

Shipped inside every `sentinel evidence export` archive as `verify.py`, and imported by the
agent itself for the hash primitives, so the agent and the committee's copy cannot drift.

    python3 -I verify.py [ARCHIVE_DIR] [--key-file FILE] [--json]

Exit status: 0 the chain verifies and the recomputed availability matches the agent's figures;
1 a broken link, a figure that differs, or (with an HMAC-keyed archive and no key) links that
could not be checked; 2 the archive is unreadable.

The chain (documented in README.md of the archive, and here):

  canonical(row) = UTF-8 of the JSON array of the row's columns, in the documented order,
                   id first; integers as decimal, NULL as null, text as a JSON string with only
                   '"', '\\' and U+0000..U+001F escaped (\\b \\t \\n \\f \\r short, others \\u00xx,
                   lowercase hex), no spaces: what Python's
                   json.dumps(row, ensure_ascii=False, separators=(",", ":")) prints.
  h_0            = SHA-256("his-sentinel/evidence/v1/" + table)
  h_i            = SHA-256(h_{i-1} || canonical(row_i))                 (no key)
                 = HMAC-SHA-256(key, h_{i-1} || canonical(row_i))       (storage.evidence_key)

Rows of one table are chained in id order and ids are consecutive, so a deleted row leaves an
id gap, an edited row no longer matches its link, an inserted row has no link (or a wrong one)
and two swapped rows each match the other's link.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

GENESIS_PREFIX = b"his-sentinel/evidence/v1/"
KEY_ID_LABEL = b"his-sentinel evidence key id"
SWAP_LOOKAHEAD = 256

_ENCODE = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), check_circular=False, allow_nan=False
).encode


def canonical(values: Sequence[Any]) -> bytes:
    return _ENCODE(list(values)).encode("utf-8")


def genesis(table: str) -> bytes:
    return hashlib.sha256(GENESIS_PREFIX + table.encode("ascii")).digest()


def link(prev: bytes, data: bytes, key: bytes | None) -> bytes:
    if key is None:
        return hashlib.sha256(prev + data).digest()
    return hmac.digest(key, prev + data, "sha256")


def key_id(key: bytes | None) -> str:
    """A public fingerprint of the key (never the key): tells which key sealed a chain."""
    if key is None:
        return ""
    return hmac.new(key, KEY_ID_LABEL, "sha256").hexdigest()[:16]


def relabel(data: bytes, old_id: int, new_id: int) -> bytes:
    """The canonical bytes of the same content under another id (for spotting swaps)."""
    head = b"[%d," % old_id
    if not data.startswith(head):
        return data
    return b"[%d," % new_id + data[len(head) :]


@dataclass
class Problem:
    table: str
    row_id: int | None
    kind: str
    """edited | deleted | inserted | reordered | inconsistent | key"""
    detail: str

    def text(self) -> str:
        where = f"{self.table} row {self.row_id}" if self.row_id is not None else self.table
        return f"{where}: {self.kind} — {self.detail}"


@dataclass
class Walk:
    table: str
    rows: int = 0
    sealed: int = 0
    unsealed: int = 0
    first_id: int | None = None
    last_id: int | None = None
    last_h: bytes | None = None
    problem: Problem | None = None
    unsealed_ids: list[int] = field(default_factory=list)


Row = tuple[int, bytes, "bytes | None"]
"""(id, canonical bytes, stored link or None when not sealed)."""


def walk(
    table: str,
    rows: Iterable[Row],
    prev: bytes,
    expect_id: int | None,
    key: bytes | None,
    on_row: Callable[[int], None] | None = None,
    lazy_check: Callable[[int, bytes, bytes], bool] | None = None,
) -> Walk:
    """Check each row's link against the previous row's stored link; stop at the first break.

    `expect_id` None accepts any first id (an export that starts mid-table says where).
    `lazy_check(id, prev, h)` may re-derive a row's canonical bytes a second way before a
    mismatch is reported (the agent computes them in SQL for speed, Python decides).
    """
    w = Walk(table)
    it: Iterator[Row] = iter(rows)
    sha = hashlib.sha256
    for rid, data, h in it:
        if expect_id is not None and rid != expect_id:
            if rid > expect_id:
                missing = f"{expect_id}" if rid == expect_id + 1 else f"{expect_id}..{rid - 1}"
                w.problem = Problem(
                    table, expect_id, "deleted", f"row(s) {missing} missing (next present: {rid})"
                )
            else:
                w.problem = Problem(
                    table, rid, "inserted", f"row id {rid} out of order (expected {expect_id})"
                )
            return w
        w.rows += 1
        if w.first_id is None:
            w.first_id = rid
        if h is None:
            w.unsealed += 1
            w.unsealed_ids.append(rid)
            expect_id = rid + 1
            w.last_id = rid
            continue
        if w.unsealed:
            first = w.unsealed_ids[0]
            w.problem = Problem(
                table, first, "inserted", f"row {first} has no link although later row {rid} is sealed"
            )
            return w
        calc = sha(prev + data).digest() if key is None else hmac.digest(key, prev + data, "sha256")
        if calc != h and not (lazy_check is not None and lazy_check(rid, prev, h)):
            w.problem = _classify(table, rid, data, prev, h, it, key)
            return w
        w.sealed += 1
        prev = h
        expect_id = rid + 1
        w.last_id = rid
        if on_row is not None and not w.rows & 0xFFFF:
            on_row(w.rows)
    w.last_h = prev
    return w


def _classify(
    table: str, rid: int, data: bytes, prev: bytes, h: bytes, rest: Iterator[Row], key: bytes | None
) -> Problem:
    """A row whose link does not match: edited, or swapped with a nearby row."""
    ahead: list[Row] = []
    for r in rest:
        ahead.append(r)
        if len(ahead) >= SWAP_LOOKAHEAD:
            break
    prev_j = h
    for jid, jdata, jh in ahead:
        if jh is None:
            break
        # Row j's content relabelled with this id fits this link, and ours fits row j's.
        fits_here = link(prev, relabel(jdata, jid, rid), key) in (h, jh)
        if fits_here:
            back = relabel(data, rid, jid)
            if link(prev_j, back, key) in (jh, h) or jid == rid + 1:
                return Problem(
                    table,
                    rid,
                    "reordered",
                    f"rows {rid} and {jid} are swapped (each holds the other's content)",
                )
        prev_j = jh
    return Problem(table, rid, "edited", "content does not match its link (row changed after sealing)")


# ------------------------------------------------------------------------ archive verification


def _load_jsonl(path: str) -> list[list[Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def verify_archive(root: str, key: bytes | None) -> tuple[list[str], list[Problem], dict[str, Any]]:
    """Check every exported table's chain from its anchor; return (lines, problems, manifest)."""
    import os

    with open(os.path.join(root, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    lines: list[str] = []
    problems: list[Problem] = []
    keyed = bool(manifest.get("key_id"))
    if keyed and key is None:
        problems.append(
            Problem(
                "*", None, "key", "the chain is sealed with an HMAC key: pass --key-file to check the links"
            )
        )
        return lines, problems, manifest
    if keyed and key_id(key) != manifest["key_id"]:
        problems.append(Problem("*", None, "key", "this key is not the one that sealed the chain"))
        return lines, problems, manifest
    use_key = key if keyed else None
    for t in manifest["tables"]:
        name = t["table"]
        rows = _load_jsonl(os.path.join(root, t["file"]))
        anchor = bytes.fromhex(t["anchor_h"])
        first = t.get("first_id")

        def gen(rows: list[list[Any]] = rows) -> Iterator[Row]:
            for r in rows:
                h = r[-1]
                yield int(r[0]), canonical(r[:-1]), (bytes.fromhex(h) if h else None)

        w = walk(name, gen(), anchor, first, use_key)
        if (
            w.problem is None
            and t.get("last_h")
            and w.sealed
            and w.last_h is not None
            and w.last_h.hex() != t["last_h"]
        ):
            w.problem = Problem(name, w.last_id, "edited", "last link differs from the manifest")
        if w.problem is None and t.get("last_id") is not None and w.rows and w.last_id != t["last_id"]:
            w.problem = Problem(
                name, w.last_id, "deleted", f"rows after {w.last_id} missing (manifest: {t['last_id']})"
            )
        if w.problem is None and w.unsealed_ids:
            # Every row that counts is sealed when it is written: one without a link was not.
            w.problem = Problem(name, w.unsealed_ids[0], "inserted", "row has no link (never sealed)")
        if w.problem is None and t.get("rows") is not None and w.rows != t["rows"]:
            w.problem = Problem(name, None, "deleted", f"{w.rows} rows, manifest says {t['rows']}")
        status = "OK" if w.problem is None else "BROKEN"
        lines.append(f"{name:22} {w.rows:>10} rows  {w.sealed:>10} linked  {status}")
        if w.problem is not None:
            problems.append(w.problem)
    return lines, problems, manifest


# ------------------------------------------------------------------------ availability


AVAILABLE, UNAVAILABLE, UNKNOWN, MAINTENANCE, FORCE_MAJEURE = (
    "available",
    "unavailable",
    "unknown",
    "maintenance",
    "force_majeure",
)
CATEGORIES = (AVAILABLE, UNAVAILABLE, UNKNOWN, MAINTENANCE, FORCE_MAJEURE)
STATE_CATEGORY = {0: AVAILABLE, 1: AVAILABLE, 2: UNAVAILABLE, 3: UNKNOWN}


def _category_at(
    t: int, states: list[tuple[int, int, str]], gaps: list[tuple[int, int]], excl: list[tuple[int, int, str]]
) -> str:
    """One check at instant t: exclusion > agent down > its state > no data (unknown)."""
    best = None
    for s, e, kind in excl:
        if s <= t < e and (best is None or kind == FORCE_MAJEURE):
            best = kind
    if best is not None:
        return best
    for s, e in gaps:
        if s <= t < e:
            return UNKNOWN
    cat = UNKNOWN
    for s, e, c in states:
        if s <= t < e:
            cat = c  # later intervals win, as in the agent (a late sample never overlaps)
    return cat


def _combine(cats: list[str], need: int) -> str:
    """k-of-n rule: available when `need` are; excluded when exclusions make up the rest."""
    n = {c: 0 for c in CATEGORIES}
    for c in cats:
        n[c] += 1
    if n[AVAILABLE] >= need:
        return AVAILABLE
    if n[AVAILABLE] + n[MAINTENANCE] + n[FORCE_MAJEURE] >= need:
        return FORCE_MAJEURE if n[FORCE_MAJEURE] and n[AVAILABLE] + n[MAINTENANCE] < need else MAINTENANCE
    if n[AVAILABLE] + n[MAINTENANCE] + n[FORCE_MAJEURE] + n[UNKNOWN] >= need:
        return UNKNOWN
    return UNAVAILABLE


def intervals_from_log(rows: list[list[Any]], now_ms: int) -> dict[str, list[tuple[int, int, str]]]:
    """Rebuild every check's state intervals from the chained interval log (open/close events)."""
    opened: dict[int, tuple[str, int, int]] = {}
    closed: dict[int, int] = {}
    for r in rows:
        _id, interval_id, event, check, ts, state = r[0], r[1], r[2], r[3], r[4], r[5]
        if event == "open":
            opened[interval_id] = (check, ts, state)
        elif event == "close":
            closed[interval_id] = ts
    out: dict[str, list[tuple[int, int, str]]] = {}
    for iid in sorted(opened):
        check, start, state = opened[iid]
        end = closed.get(iid, now_ms)
        out.setdefault(check, []).append((start, max(start, end), STATE_CATEGORY[int(state)]))
    return out


def alive_until(run: dict[str, Any], now_ms: int, grace_ms: int) -> int:
    """The liveness rule: a stopped run was alive until its stop; a run without a stop until its
    last heartbeat plus the grace, never past now (the agent's AgentRun.alive_until)."""
    if run["stopped_ts"] is not None:
        return int(run["stopped_ts"])
    return max(int(run["started_ts"]), min(now_ms, int(run["heartbeat_ts"]) + grace_ms))


def agent_gaps(
    runs: list[dict[str, Any]], start: int, end: int, now_ms: int, grace_ms: int
) -> list[tuple[int, int]]:
    """Time in [start, end) when no agent run was alive; before the first run is not a gap
    (that is "before monitoring began", which the exported eras leave out or count as unknown)."""
    if not runs:
        return []
    alive = sorted((int(r["started_ts"]), alive_until(r, now_ms, grace_ms)) for r in runs)
    gaps, cursor = [], max(start, alive[0][0])
    for s, e in alive:
        if e <= cursor:
            continue
        if s >= end:
            break
        if s > cursor:
            gaps.append((cursor, s))
        cursor = max(cursor, e)
    if cursor < end:
        gaps.append((cursor, end))
    return [(s, e) for s, e in gaps if e > s]


def system_figures(
    system: dict[str, Any],
    intervals: dict[str, list[tuple[int, int, str]]],
    gaps: list[tuple[int, int]],
    start: int,
    end: int,
) -> dict[str, int]:
    """Sum each category over the planned spans, evaluating the system between boundaries."""
    checks: list[str] = system["checks"]
    groups: list[tuple[list[str], int]] = [(g["checks"], g["need"]) for g in system.get("groups", [])]
    grouped = {c for g, _ in groups for c in g}
    units: list[tuple[list[str], int]] = [(g, min(k, len(g))) for g, k in groups]
    units += [([c], 1) for c in checks if c not in grouped]
    excl = {c: [(x[0], x[1], x[2]) for x in system["exclusions"].get(c, [])] for c in checks}
    states = {c: intervals.get(c, []) for c in checks}
    points = {start, end}
    for c in checks:
        for s, e, _ in states[c] + excl[c]:
            points.update((s, e))
    for s, e in gaps:
        points.update((s, e))
    for s, e in system["planned"]:
        points.update((s, e))
    bounds = sorted(p for p in points if start <= p <= end)
    planned = sorted((max(s, start), min(e, end)) for s, e in system["planned"] if s < end and e > start)
    totals = {c: 0 for c in CATEGORIES}
    pi = 0
    for i in range(len(bounds) - 1):
        a, b = bounds[i], bounds[i + 1]
        while pi < len(planned) and planned[pi][1] <= a:
            pi += 1
        if pi >= len(planned) or planned[pi][0] >= b:
            continue
        lo, hi = max(a, planned[pi][0]), min(b, planned[pi][1])
        if lo >= hi:
            continue
        per = {c: _category_at(lo, states[c], gaps, excl[c]) for c in checks}
        unit_cats = [_combine([per[c] for c in members if c in per], k) for members, k in units]
        totals[_combine(unit_cats, len(unit_cats))] += hi - lo
    totals["planned"] = sum(e - s for s, e in planned)
    return totals


def pct(available: int, denominator: int) -> float | None:
    return None if denominator <= 0 else available * 100 / denominator


def _approved(record: dict[str, Any]) -> bool:
    """Both parties approved (经双方认定): only then may a record exclude time."""
    parties = {a.get("party") for a in record.get("approvals") or []}
    return {"甲方", "乙方"} <= parties


def _chained(root: str, table: str, manifest: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The exported rows of a chained table as dicts by column name (None: not in the archive)."""
    import os

    for t in manifest.get("tables", []):
        if t["table"] == table:
            rows = _load_jsonl(os.path.join(root, t["file"]))
            return [dict(zip(t["columns"], r, strict=False)) for r in rows]
    return None


def _in_force(config_text: str, system: str) -> tuple[list[str], list[tuple[list[str], int]]]:
    """A system's critical checks and redundancy groups in a recorded configuration."""
    data = json.loads(config_text)
    checks = [
        c["name"]
        for c in data.get("checks") or []
        if c.get("system") == system and c.get("availability_critical") and c.get("enabled", True)
    ]
    groups: list[tuple[list[str], int]] = []
    for s in data.get("systems") or []:
        if s["name"] == system:
            groups = [(list(g["checks"]), int(g.get("need", 1))) for g in s.get("redundancy") or []]
    return checks, groups


def _cross_checks(root: str, manifest: dict[str, Any], system: dict[str, Any]) -> list[str]:
    """What the agent says it applied, checked against the chained rows themselves: every
    excluded span approved by both parties in the approvals ledger, every era's critical checks
    and groups those of the configuration version recorded in the chain."""
    problems: list[str] = []
    approvals = _chained(root, "approvals", manifest)
    if approvals is not None:
        given: dict[tuple[str, str], set[str]] = {}
        for a in approvals:
            if a["ts"] <= manifest["generated_ms"]:
                given.setdefault((a["ledger"], a["name"]), set()).add(a["party"])
        for era in system.get("eras") or []:
            for spans in era["exclusions"].values():
                for _s, _e, kind, name in spans:
                    ledger = "maintenance" if kind == "maintenance" else "exclusions"
                    if not {"甲方", "乙方"} <= given.get((ledger, name), set()):
                        problems.append(
                            f"{name}: excluded without both approvals in the ledger / 未经双方认定"
                        )
    versions = _chained(root, "config_versions", manifest)
    if versions is not None:
        by_id = {v["id"]: v for v in versions}
        for era in system.get("eras") or []:
            vid = era.get("config_version")
            if vid is None:
                continue
            v = by_id.get(vid)
            if (
                v is None
                or v["hash"] != era.get("config_hash")
                or hashlib.sha256(v["config"].encode("utf-8")).hexdigest() != v["hash"]
            ):
                problems.append(f"configuration version {vid} is not in the chain / 配置版本不在证据链中")
                continue
            checks, groups = _in_force(v["config"], system["name"])
            exported = [(list(g["checks"]), int(g["need"])) for g in era.get("groups", [])]
            if checks != era["checks"] or groups != exported:
                problems.append(
                    f"era from {era['start_ms']}: critical checks differ from configuration {vid}"
                )
    return sorted(set(problems))


def recompute(root: str, manifest: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Recompute each system's availability from the exported data; compare with the agent's.

    Each system comes era by era (the configuration in force then: critical checks, redundancy,
    planned spans, approved exclusions); the figure is the sum over its eras."""
    import os

    avail = manifest.get("availability")
    if not avail:
        return ["(no availability data in this archive)"], []
    start, end, now = avail["start_ms"], avail["end_ms"], manifest["generated_ms"]
    grace = int(avail.get("grace_ms") or 0)
    ilog = _load_jsonl(os.path.join(root, "data", "interval_log.jsonl"))
    with open(os.path.join(root, "availability", "runs.json"), encoding="utf-8") as f:
        runs = json.load(f)
    with open(os.path.join(root, "availability", "systems.json"), encoding="utf-8") as f:
        systems = json.load(f)
    intervals = intervals_from_log(ilog, now)
    stop = min(end, now)
    gaps = agent_gaps(runs, start, stop, now, grace)
    lines, differ = [], []
    for s in systems:
        records = {(r["kind"], r["name"]): r for r in s.get("exclusion_records") or []}
        unapproved = sorted(
            {
                name
                for era in s.get("eras") or []
                for spans in era["exclusions"].values()
                for _s, _e, kind, name in spans
                if not _approved(records.get((kind, name), {}))
            }
        )
        if not s.get("eras"):
            lines.append(f"{s['name']}: — (nothing measured / 无可计算数据)")
            if s.get("agent_figures"):
                differ.append(s["name"])
            continue
        tot = {c: 0 for c in CATEGORIES}
        tot["planned"] = 0
        for era in s["eras"]:
            part = system_figures(era, intervals, gaps, era["start_ms"], era["end_ms"])
            for k, v in part.items():
                tot[k] += v
        accountable = tot["planned"] - tot[MAINTENANCE] - tot[FORCE_MAJEURE]
        mine = pct(tot[AVAILABLE], accountable)
        agent = s.get("agent_figures") or {}
        same = bool(agent) and all(tot.get(k) == agent.get(k + "_ms") for k in ("planned", *CATEGORIES))
        mark = "same as agent" if same else "DIFFERS from agent"
        if unapproved:
            mark += f"; excluded without both approvals / 未经双方认定: {', '.join(unapproved)}"
        crossed = _cross_checks(root, manifest, s)
        if crossed:
            mark += "; " + "; ".join(crossed)
        if not same or unapproved or crossed:
            differ.append(s["name"])
        shown = "—" if mine is None else f"{mine:.4f} %"
        sec = {k: f"{v / 1000:.0f} s" for k, v in tot.items()}
        versions = sorted({str(e.get("config_version")) for e in s["eras"]})
        lines.append(
            f"{s['name']}: {shown} = available {sec[AVAILABLE]} ÷ (planned {sec['planned']}"
            f" − maintenance {sec[MAINTENANCE]} − force majeure {sec[FORCE_MAJEURE]});"
            f" unavailable {sec[UNAVAILABLE]}, unknown {sec[UNKNOWN]}; configuration versions"
            f" {', '.join(versions)} — {mark}"
        )
    return lines, differ


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    import os

    p = argparse.ArgumentParser(description="Verify a HIS Sentinel evidence archive (standard library only).")
    p.add_argument("root", nargs="?", default=os.path.dirname(os.path.abspath(__file__)))
    p.add_argument(
        "--key-file", help="file holding the HMAC key (storage.evidence_key), if the chain is keyed"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    args = p.parse_args(argv)
    key = None
    if args.key_file:
        with open(args.key_file, "rb") as f:
            key = f.read().strip()
    try:
        lines, problems, manifest = verify_archive(args.root, key)
    except (OSError, ValueError, KeyError) as exc:
        print(f"cannot read the archive: {exc}", file=sys.stderr)
        return 2
    av_lines, differ = recompute(args.root, manifest) if not problems else ([], [])
    ok = not problems and not differ
    if args.json:
        print(
            json.dumps(
                {"ok": ok, "problems": [p.__dict__ for p in problems], "differ": differ}, ensure_ascii=False
            )
        )
    else:
        print(f"HIS Sentinel evidence archive — period {manifest.get('period')}")
        print(f"Chain head / 链头: {manifest.get('head')}")
        print("Hash chain / 哈希链:")
        for line in lines:
            print("  " + line)
        for prob in problems:
            print("  FIRST BROKEN LINK / 首个断链: " + prob.text())
        if av_lines:
            print("Availability recomputed / 可用率复算:")
            for line in av_lines:
                print("  " + line)
        print("RESULT / 结论: " + ("VERIFIED / 验证通过" if ok else "NOT VERIFIED / 验证未通过"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
