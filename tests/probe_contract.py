"""Checks every probe module must pass: registered under its kind, no default thresholds."""

from __future__ import annotations

from types import ModuleType

from probes import registry


def assert_registered(kind: str, module: ModuleType) -> None:
    """The registry resolves `kind` to `module`, whose probe judges itself (no default rules)."""
    assert registry.settings_model(kind) is module.Settings
    assert registry.module(kind) is module
    assert module.Probe.kind == kind
    assert dict(registry.default_thresholds(kind)) == {}
