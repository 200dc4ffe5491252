"""What the deploy checks share: the CLI's parser, the settings' variable names, and a
systemd unit's or compose service's command line as the CLI would receive it."""

from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path

from services.cli import build_parser
from services.settings import SECRET_FILE_VARIABLES, Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
# The push daemon reads its token from here when no --token-file is given (services/cli.py).
PUSH_VARIABLES = frozenset({"EXAMVAULT_PUSH_TOKEN"})


def known_variables() -> frozenset[str]:
    prefix = Settings.model_config.get("env_prefix", "")
    fields = {f"{prefix}{name}".upper() for name in Settings.model_fields}
    return frozenset(fields | set(SECRET_FILE_VARIABLES) | PUSH_VARIABLES)


def parse_command(arguments: list[str]) -> argparse.Namespace:
    """The CLI's own parse of `examvault ARGUMENTS`; AssertionError with argparse's complaint."""
    complaint = io.StringIO()
    try:
        with contextlib.redirect_stderr(complaint):
            return build_parser().parse_args(arguments)
    except SystemExit as exc:
        raise AssertionError(
            f"`examvault {' '.join(arguments)}` does not parse: {complaint.getvalue().strip()}"
        ) from exc


def subcommands() -> set[str]:
    parser = build_parser()
    (commands,) = (
        action for action in parser._actions if isinstance(action, argparse._SubParsersAction)
    )
    return set(commands.choices)
