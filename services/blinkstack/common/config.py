"""Flags whose defaults come from environment variables (12-factor): flag > env > built-in default."""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r}")


def env_option(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    flag: str,
    env: str,
    default: Any,
    kind: Callable[[str], Any] = str,
    help: str = "",
    at_least: float | None = None,
    below: float | None = None,
    **kwargs: Any,
) -> None:
    """Add `flag`, defaulting to $`env` when set (parsed with `kind`), else to `default`.

    Pass `env` as a literal string: every name stays findable with grep and listed by `env_table`. `at_least` and
    `below` bound the value: argparse then refuses one outside them naming the flag (or the variable), so the
    code the value goes to never needs to know the flag's name.
    """
    if at_least is not None or below is not None:
        kind = _bounded(kind, at_least, below)
    raw = os.environ.get(env)
    try:
        value = kind(raw) if raw is not None else default
    except (ValueError, argparse.ArgumentTypeError) as exc:
        raise SystemExit(f"invalid ${env}={raw!r}: {exc}") from None
    text = f"{help} [env {env}, default {default!r}]".replace("%", "%%")  # argparse formats help with %
    action = parser.add_argument(flag, type=kind, default=value, help=text, **kwargs)
    vars(action).update(env=env, env_default=default)  # for the configuration table (`env_table`)


def from_flags(options_class: type[T], args: argparse.Namespace, **built: Any) -> T:
    """An options dataclass from parsed flags: each field not in `built` is the flag of the same name.

    The one place flags become options: a service's `options.from_args` passes the parts it builds (settings
    that read files, nested dataclasses) and everything else is copied by name, so a field without its flag fails
    here, at start-up, not on first use.
    """
    fields = dataclasses.fields(options_class)  # type: ignore[arg-type]
    names = [f.name for f in fields if f.init and f.name not in built]
    return options_class(**built, **{name: getattr(args, name) for name in names})


def env_table(parser: argparse.ArgumentParser) -> list[tuple[str, str, Any, str]]:
    """(env name, flag, built-in default, help) of every `env_option` of `parser`, in order."""
    rows = []
    for action in parser._actions:
        env = vars(action).get("env")
        if env is not None:
            help_text = (action.help or "").split(" [env ")[0].replace("%%", "%")
            rows.append((env, action.option_strings[-1], vars(action)["env_default"], help_text))
    return rows


def _bounded(kind: Callable[[str], Any], at_least: float | None, below: float | None) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if at_least is not None and value < at_least:
            raise argparse.ArgumentTypeError(f"must be >= {_number(at_least)} (got {value})")
        if below is not None and value >= below:
            raise argparse.ArgumentTypeError(f"must be < {_number(below)} (got {value})")
        return value

    return parse


def _number(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"
