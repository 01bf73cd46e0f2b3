"""What every facecli command shares: expected failures as one line and an exit code."""

from __future__ import annotations

import functools

import typer


class Exit(Exception):
    """An expected failure: print one line, exit with ``code``."""

    def __init__(self, line: str, code: int = 2) -> None:
        super().__init__(line)
        self.code = code


def guarded(fn):
    """Turn expected failures and interruptions into one line and an exit code (never a traceback)."""
    from facecli.pipeline.signals import Interrupted

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exit as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.code) from None
        except (KeyboardInterrupt, Interrupted) as exc:
            code = exc.code if isinstance(exc, Interrupted) else 130
            word = "terminated" if code == 143 else "interrupted"
            typer.echo(f"{word}; finished outputs are kept, progress of unfinished ones is saved: "
                       "run the same command again to resume", err=True)
            raise typer.Exit(code) from None

    return wrapper


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise Exit(f"{name} must be one of {', '.join(choices)}; got {value!r}")
