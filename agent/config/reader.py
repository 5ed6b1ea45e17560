"""Reading the configuration file: YAML in, plain data and the line of every key out.

Whatever path it is given, the reader answers with data or a `ConfigError`, never a hang, a
traceback or a machine out of memory: only a regular file is opened (a named pipe would block
forever), its size is bounded, and the YAML node tree is walked once before anything is built
from it, with its size bounded as the aliases expand it (a "billion laughs" document is a few
hundred bytes), its nesting bounded, and duplicate keys refused (YAML silently keeps the last).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from agent.config.errors import ConfigError, Problem, format_path

Lines = dict[tuple[Any, ...], int]

MAX_BYTES = 1 << 20
"""Largest configuration file read. A 5,000-check site fits several times over; a log file or
a database dump given by mistake is refused before it is parsed."""

MAX_NODES = 250_000
"""Most YAML values a document may hold once its aliases are expanded. A file of MAX_BYTES
without aliases stays below it; an alias bomb reaches it after a fraction of a second."""

MAX_DEPTH = 64
"""Deepest nesting of mappings and lists; a configuration nests about eight levels."""

_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"
_RECURSIVE = "an alias refers to a node that contains it (a recursive structure)"
_Pair = tuple[yaml.Node, yaml.Node]


def read_yaml(text: str, source: str = "<config>") -> tuple[dict[str, Any], Lines]:
    """The top-level mapping and the YAML line of every key path; ConfigError if it is not one."""
    if len(text) > MAX_BYTES:
        raise _too_large(source, len(text.encode("utf-8")))
    # One pass, with libyaml when present: composing for line numbers and loading again in
    # pure Python cost a fresh `sentinel check` most of its CPU on a 550-check file.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        node = loader.get_single_node()
        lines: Lines = {}
        if node is not None:
            # Before construction: what the data and its validation would expand is bounded first.
            walk = _Walk(loader, source)
            walk.lines[()] = node.start_mark.line + 1
            walk.node(node, (), 0)
            if walk.duplicates:
                raise ConfigError(source, sorted(walk.duplicates, key=lambda p: p.line or 0))
            lines = walk.lines
        raw = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [Problem("", line, f"not valid YAML: {problem}")]) from None
    except RecursionError:
        # Only without libyaml (which refuses nesting past 1000 levels itself).
        raise ConfigError(source, [Problem("", None, f"nested more than {MAX_DEPTH} levels deep")]) from None
    finally:
        loader.dispose()
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        what = "a list" if isinstance(raw, list) else f"a single {_scalar_kind(raw)}"
        raise ConfigError(
            source,
            [
                Problem(
                    "",
                    1,
                    f"this does not look like a Sentinel configuration: the file holds {what}, but a "
                    "configuration is a mapping of sections (site:, checks:, ...)",
                )
            ],
        )
    return raw, lines


def read_file(path: str | Path) -> tuple[dict[str, Any], Lines]:
    """Read and parse the configuration file at `path`; ConfigError for anything else there."""
    p = Path(path)
    source = str(p)
    try:
        # stat before open: opening a FIFO blocks until a writer comes, a device may act on open.
        what = _not_regular(os.stat(p).st_mode)
        if what is not None:
            raise _not_a_file(source, what)
        # O_NONBLOCK: should the path be swapped for a FIFO after the stat, the open still
        # returns (and fstat refuses it); for a regular file the flag changes nothing.
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ConfigError(source, [Problem("", None, f"cannot read the file: {exc.strerror}")]) from None
    try:
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            what = _not_regular(st.st_mode)
            if what is not None:
                raise _not_a_file(source, what)
            if st.st_size > MAX_BYTES:
                raise _too_large(source, st.st_size)
            # Read one byte past the bound: /proc files report size 0, and a file may grow.
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(source, [Problem("", None, f"cannot read the file: {exc.strerror}")]) from None
    if len(data) > MAX_BYTES:
        raise _too_large(source, None)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        problem = Problem("", line, "the file is not UTF-8 text (a configuration? then save it as UTF-8)")
        raise ConfigError(source, [problem]) from None
    return read_yaml(text, source)


def _not_regular(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _not_a_file(source: str, what: str) -> ConfigError:
    return ConfigError(
        source, [Problem("", None, f"this is {what}, not a regular file: give the path of the YAML file")]
    )


def _too_large(source: str, size: int | None) -> ConfigError:
    limit = f"{MAX_BYTES / (1 << 20):g} MiB"
    size_text = f" ({size / (1 << 20):.1f} MiB)" if size is not None else ""
    return ConfigError(
        source,
        [
            Problem(
                "",
                None,
                f"the file is larger than {limit}{size_text}: this does not look like a Sentinel "
                "configuration (is it the right file?)",
            )
        ],
    )


def _scalar_kind(value: Any) -> str:
    if isinstance(value, str):
        return "text value"
    if isinstance(value, bool):
        return "true/false value"
    if isinstance(value, int | float):
        return "number"
    return "value"


class _Refused(Exception):
    """The node tree is refused as a whole; carries the one problem to report."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


class _Walk:
    """One walk over the composed node tree, before any data is built: the line of every key
    path, duplicate keys, and the bounds (expanded size, nesting, recursive aliases).

    Aliased nodes are walked again at each use, as the data will repeat them; the count of
    walked nodes stops the walk at MAX_NODES, so an alias bomb costs a bounded amount of time
    and memory. Duplicate keys are looked for once per mapping, where it is written."""

    def __init__(self, loader: Any, source: str) -> None:
        self.loader = loader
        self.source = source
        self.lines: Lines = {}
        self.duplicates: list[Problem] = []
        self.count = 0
        self.aliased = False
        self._seen: set[int] = set()
        self._open: set[int] = set()
        self._flat: dict[int, list[_Pair]] = {}

    def node(self, node: yaml.Node, path: tuple[Any, ...], depth: int) -> None:
        try:
            self._node(node, path, depth)
        except _Refused as refused:
            raise ConfigError(self.source, [refused.problem]) from None

    def _node(self, node: yaml.Node, path: tuple[Any, ...], depth: int) -> None:
        line = node.start_mark.line + 1
        self._tick()
        if depth > MAX_DEPTH:
            raise _Refused(Problem(format_path(path), line, f"nested more than {MAX_DEPTH} levels deep"))
        key = id(node)
        if key in self._open:
            raise _Refused(Problem(format_path(path), line, _RECURSIVE))
        if key in self._seen:
            self.aliased = True
        if isinstance(node, yaml.MappingNode):
            self._open.add(key)
            self._duplicates(node, path)
            own, merged = self._pairs(node, path)
            for k, v in own:
                at = (*path, k.value)
                self.lines[at] = k.start_mark.line + 1
                self._node(v, at, depth + 1)
            # The data keeps the last of the merged pairs with one key, and a key written
            # next to `<<:` wins over all of them: only the pair that ends up in it is walked.
            for k, v in reversed(merged):
                at = (*path, k.value)
                if at not in self.lines:
                    self.lines[at] = k.start_mark.line + 1
                    self._node(v, at, depth + 1)
            self._open.discard(key)
        elif isinstance(node, yaml.SequenceNode):
            self._seen.add(key)
            self._open.add(key)
            for i, item in enumerate(node.value):
                self.lines[(*path, i)] = item.start_mark.line + 1
                self._node(item, (*path, i), depth + 1)
            self._open.discard(key)
        else:
            self._seen.add(key)

    def _tick(self) -> None:
        self.count += 1
        if self.count > MAX_NODES:
            how = " once its aliases are expanded" if self.aliased else ""
            raise _Refused(
                Problem(
                    "",
                    None,
                    f"the document holds more than {MAX_NODES:,} values{how}: refused "
                    "(this does not look like a Sentinel configuration)",
                )
            )

    def _pairs(self, node: yaml.MappingNode, path: tuple[Any, ...]) -> tuple[list[_Pair], list[_Pair]]:
        """The pairs written in a mapping, and those its `<<:` merges add. Keys that are lists
        or mappings are left out: construction refuses them with their line."""
        own: list[_Pair] = []
        merges = False
        for k, v in node.value:
            if k.tag == _MERGE_TAG:
                merges = True
            elif isinstance(k, yaml.ScalarNode):
                own.append((k, v))
        return own, (self._merged(node, path) if merges else [])

    def _merged(self, node: yaml.MappingNode, path: tuple[Any, ...]) -> list[_Pair]:
        """The pairs `<<:` merges into a mapping, as PyYAML builds them: each pair once however
        often it is merged in, so a merge of merges of merges stays linear, not a bomb."""
        key = id(node)
        done = self._flat.get(key)
        if done is not None:
            return done
        self._flat[key] = []  # while it is being merged: merging itself again adds nothing
        merged: list[_Pair] = []
        taken: set[int] = set()
        for k, v in node.value:
            if k.tag != _MERGE_TAG:
                continue
            for target in v.value if isinstance(v, yaml.SequenceNode) else [v]:
                if not isinstance(target, yaml.MappingNode):
                    continue  # construction refuses it: "expected a mapping for merging"
                self.aliased = True
                self._duplicates(target, path)
                own, inner = self._pairs(target, path)
                for pair in inner + own:
                    if id(pair[0]) not in taken:
                        self._tick()
                        taken.add(id(pair[0]))
                        merged.append(pair)
        self._flat[key] = merged
        return merged

    def _duplicates(self, node: yaml.MappingNode, path: tuple[Any, ...]) -> None:
        """Keys written twice in one mapping; looked for once per mapping, where it is written."""
        if id(node) in self._seen:
            return
        self._seen.add(id(node))
        keys: dict[Any, int] = {}
        for k, _v in node.value:
            if k.tag == _MERGE_TAG or not isinstance(k, yaml.ScalarNode):
                continue
            line = k.start_mark.line + 1
            ident = k.value if k.tag == _STR_TAG else self._constructed(k)
            if ident in keys:
                self.duplicates.append(
                    Problem(
                        format_path((*path, k.value)),
                        line,
                        f"duplicate key '{k.value}' (lines {keys[ident]} and {line}); "
                        "YAML would silently keep only the last one",
                    )
                )
            else:
                keys[ident] = line

    def _constructed(self, key: yaml.ScalarNode) -> Any:
        """A non-string key as the data will hold it: `1` and `01`, `yes` and `true` collide."""
        value = self.loader.construct_object(key)
        try:
            hash(value)
        except TypeError:
            return (key.tag, key.value)
        return value
