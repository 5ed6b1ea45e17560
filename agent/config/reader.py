"""Reading the configuration file: YAML in, plain data and the line of every key out.

Apart from validation (agent.config) so the validating helper process can read the file and
drop YAML's node tree before it loads pydantic: the tree's memory is then reused for the
models instead of adding to the process's peak (agent.configload).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from agent.config.errors import ConfigError, Problem

Lines = dict[tuple[Any, ...], int]


def read_yaml(text: str, source: str = "<config>") -> tuple[dict[str, Any], Lines]:
    """The top-level mapping and the YAML line of every key path; ConfigError if not YAML."""
    # One pass, with libyaml when present: composing for line numbers and loading again in
    # pure Python cost a fresh `sentinel check` most of its CPU on a 550-check file.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        node = loader.get_single_node()
        raw = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [Problem("", line, f"not valid YAML: {problem}")]) from None
    finally:
        loader.dispose()
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(source, [Problem("", 1, "the configuration must be a mapping of sections")])
    return raw, (dict(_line_index(node)) if node is not None else {})


def read_file(path: str | Path) -> tuple[dict[str, Any], Lines]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(p), [Problem("", None, f"cannot read the file: {exc.strerror}")]) from None
    except UnicodeDecodeError:
        raise ConfigError(str(p), [Problem("", None, "the file is not UTF-8 text")]) from None
    return read_yaml(text, str(p))


def _line_index(node: yaml.Node, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], int]]:
    yield path, node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value
            yield (*path, key), k.start_mark.line + 1
            for p, line in _line_index(v, (*path, key)):
                if p != (*path, key):
                    yield p, line
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _line_index(item, (*path, i))
