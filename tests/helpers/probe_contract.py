"""What every registered probe kind must satisfy (probes.registry), checked kind by kind.

tests/probes/test_kind_contract.py runs it over every registered kind; a probe's own tests may
call it for their kind too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from agent.config.schema import CheckCommon
from probes import registry
from probes.settings import ProbeSettings
from probes.thresholds import Threshold

DRIVERS = ("oracledb", "paramiko", "pymssql", "psycopg", "pymysql")
"""Imported only inside a probe's run: a site pays for the drivers of the engines it checks."""


def _own_names(model: type[BaseModel]) -> set[str]:
    """Fields, validators and methods a model adds to pydantic's BaseModel."""
    return {*model.model_fields, *(n for n in dir(model) if not n.startswith("__"))} - set(dir(BaseModel))


def reserved_names() -> set[str]:
    """Names a kind's settings must not reuse: a check's model is CheckCommon + the settings,
    so a clash would silently replace a common field, validator or method (`kind` is added too)."""
    return _own_names(CheckCommon) | {"kind"}


def assert_kind_contract(kind: str) -> registry.KindSpec[Any]:
    """The registry's entry for `kind` is complete and consistent; returns it."""
    spec = registry.spec(kind)
    package = registry.KINDS[kind]
    assert spec.kind == kind
    assert isinstance(spec.settings, type) and issubclass(spec.settings, ProbeSettings)
    assert issubclass(spec.settings, BaseModel)
    assert spec.settings.__module__ == f"{package}.settings"
    clash = _own_names(spec.settings) & reserved_names()
    assert not clash, f"{kind} settings reuse check-common names: {sorted(clash)}"

    assert spec.probe.__module__ == f"{package}.probe"
    assert spec.probe.kind == kind
    assert callable(getattr(spec.probe, "run", None))

    assert isinstance(spec.default_thresholds, Mapping)
    for pattern, rule in spec.default_thresholds.items():
        assert isinstance(pattern, str) and pattern and isinstance(rule, Threshold), (pattern, rule)
    assert isinstance(spec.history_metrics, tuple)
    assert all(isinstance(p, str) and p for p in spec.history_metrics)
    assert spec.default_confirmations is None or 1 <= spec.default_confirmations <= 20

    assert spec.sections <= set(registry.Section)
    for section in registry.Section:
        assert (kind in registry.kinds_feeding(section)) == (section in spec.sections), section
    return spec


def modules_loaded_by(statement: str) -> set[str]:
    """Top-level and dotted module names present after `statement` runs in a fresh interpreter."""
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def drivers_in(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] in DRIVERS}
