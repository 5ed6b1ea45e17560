"""`python -m agent`: the same as the `sentinel` command."""

from agent.cli.main import entry

if __name__ == "__main__":
    entry()
