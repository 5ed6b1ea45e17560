"""Checks every probe module must pass: registered under its kind, no default thresholds."""

from __future__ import annotations

import importlib
from types import ModuleType

from probes import registry


def assert_registered(kind: str, module: ModuleType) -> None:
    """The registry resolves `kind` to the runtime `module` and its settings to `module`_settings,
    and the probe judges itself (no default rules)."""
    settings = importlib.import_module(module.__name__.rsplit(".", 1)[0] + ".settings")
    assert registry.settings_model(kind) is settings.Settings
    assert registry.module(kind) is module
    # The daemon imports the runtime module: a Settings there would mean pydantic came with it.
    assert not hasattr(module, "Settings")
    assert module.Probe.kind == kind
    assert dict(registry.default_thresholds(kind)) == {}
