"""HIS Sentinel agent: configuration, scheduling, storage, state, reports, CLI."""

__version__ = "0.1.0"
