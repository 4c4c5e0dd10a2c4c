"""`blinkstack`: `serve` runs a service (serving code only, as in the image); every other command is a client
tool or local orchestration from `blinkstack.tools` (the `tools` extra)."""

from __future__ import annotations

import sys

TOOLS_MISSING = "error: `blinkstack {command}` needs the client tools: pip install 'blinkstack[tools]' ({missing})"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        from blinkstack import serve

        sys.exit(serve.main(argv))
    try:
        from blinkstack.tools import cli as tools
    except ModuleNotFoundError as exc:
        if argv[:1] in ([], ["-h"], ["--help"]):  # the image: its one command is `serve`
            from blinkstack import serve

            print(TOOLS_MISSING.format(command="<tool>", missing=exc), file=sys.stderr)
            sys.exit(serve.main(["--help"]))
        sys.exit(TOOLS_MISSING.format(command=argv[0], missing=exc))
    sys.exit(tools.main(argv))


if __name__ == "__main__":
    main()
