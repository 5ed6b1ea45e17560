"""An installed (non-editable) agent must carry every package: a subpackage missing from
pyproject.toml works in the editable checkout and fails on the hospital's server."""

from __future__ import annotations

import tomllib

from tests.conftest import REPO


def test_every_python_package_is_listed_in_pyproject() -> None:
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(init.relative_to(REPO).parent.parts)
        for top in ("agent", "probes")
        for init in (REPO / top).rglob("__init__.py")
    }
    assert on_disk <= listed, f"missing from [tool.setuptools] packages: {sorted(on_disk - listed)}"
    # templates/ and config/ are shipped inside the agent package.
    assert {"agent.templates", "agent.example_config"} <= listed
