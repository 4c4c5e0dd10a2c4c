"""The configuration table: every BLINKSTACK_* environment variable, its flag, where it applies and its default.

Generated from the parsers themselves (`python -m blinkstack.tools.config_table`), so it cannot drift from the
code; the README carries its output verbatim and a test compares the two.
"""

from __future__ import annotations

import argparse

from blinkstack.common import paths
from blinkstack.common.config import env_table

# Read by code, not by a flag.
NOT_FLAGS = (
    ("BLINKSTACK_DATA_DIR", "tools, training", paths.DEFAULT_DATA_DIR, "the shared data (eye crops, videos)"),
    ("BLINKSTACK_TRITON_ENV", "up --with-triton, tests", ".venv/triton", "the environment with nvidia-pytriton"),
)


def _commands(parser: argparse.ArgumentParser, prefix: str = "") -> list[tuple[str, argparse.ArgumentParser]]:
    """(command path, parser) of every leaf command under `parser`."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.extend(_commands(sub, f"{prefix} {name}".strip()))
    return found or [(prefix, parser)]


def rows() -> list[tuple[str, str, str, str, str]]:
    """(env, flag, commands, default, meaning), one per environment variable, sorted by name."""
    from blinkstack.tools.cli import build_parser

    seen: dict[str, list] = {}
    for command, parser in _commands(build_parser()):
        for env, flag, default, help_text in env_table(parser):
            row = seen.setdefault(env, [flag, [], default, help_text])
            row[1].append(command.removeprefix("serve "))
    table = [
        (env, f"`{flag}`", ", ".join(cmds), repr(default), help_text)
        for env, (flag, cmds, default, help_text) in seen.items()
    ]
    table += [(env, "", where, repr(default), meaning) for env, where, default, meaning in NOT_FLAGS]
    return sorted(table)


def _shown(default: object) -> str:
    return '""' if default == "" else str(default)


def markdown() -> str:
    lines = ["| Variable | Flag | Used by | Default | Meaning |", "|---|---|---|---|---|"]
    lines += [
        f"| `{env}` | {flag} | {cmds} | `{default}` | {meaning} |" for env, flag, cmds, default, meaning in rows()
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
