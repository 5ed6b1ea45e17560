"""SQL lives in agent/store (issue 12): no module elsewhere under agent/ runs a statement itself.

Checked on the syntax tree, not by grep: any call of an attribute named execute, executemany or
executescript (`db.execute(...)`, `store.db.execute(...)`, `self._cur().executemany(...)`) outside
agent/store/ fails, naming the file and line. bench/ and tests/ may run SQL of their own.
"""

from __future__ import annotations

import ast

from tests.conftest import REPO

AGENT = REPO / "agent"
STORE = AGENT / "store"
SQL_CALLS = frozenset({"execute", "executemany", "executescript"})


def sql_calls(source: str, filename: str = "<string>") -> list[int]:
    """Line numbers of the calls of an attribute named execute, executemany or executescript."""
    return sorted(
        node.lineno
        for node in ast.walk(ast.parse(source, filename))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SQL_CALLS
    )


def test_the_finder_sees_every_form_of_the_call() -> None:
    source = (
        "db.execute('SELECT 1')\n"
        "store.db.executemany('INSERT ...', rows)\n"
        "conn().executescript(script)\n"
        "for r in self.db.execute(sql, args):\n    pass\n"
        "execute('x')\n"  # a plain function of that name is no database call
        "db.executed = 1\n"
        "f = db.execute\n"  # not called here
    )
    assert sql_calls(source) == [1, 2, 3, 4]


def test_the_store_itself_is_scanned_and_found() -> None:
    # Guards the walk below: if the paths were wrong, the rule would pass on nothing.
    assert sql_calls((STORE / "db.py").read_text(encoding="utf-8"), "db.py")
    assert (AGENT / "cli" / "main.py").is_file() and (AGENT / "reports" / "export.py").is_file()


def test_no_module_outside_agent_store_runs_sql() -> None:
    offenders = []
    scanned = 0
    for path in sorted(AGENT.rglob("*.py")):
        if path.is_relative_to(STORE):
            continue
        scanned += 1
        rel = path.relative_to(REPO).as_posix()
        offenders += [f"{rel}:{line}" for line in sql_calls(path.read_text(encoding="utf-8"), rel)]
    assert scanned > 50
    assert not offenders, "SQL outside agent/store (call a function of agent/store instead): " + ", ".join(
        offenders
    )
