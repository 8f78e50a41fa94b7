"""The ``mindgap`` command: one sub-command per capability, thin shells over the library.

Each area lives in its own module and registers its commands on :data:`app` via
``register(app)``; heavy imports happen inside the commands, so ``mindgap --help`` never
imports torch. Every :class:`~mindgap.errors.MindgapError` becomes one red line and exit
code 2 — never a traceback.
"""

from __future__ import annotations

import importlib
import sys

import typer

from ..errors import MindgapError
from .common import console, err_console

app = typer.Typer(
    name="mindgap",
    help="Multimodal retrieval and RAG that minds the modality gap.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # docstrings are wrapped at ~100 columns: reflow paragraphs instead of keeping their line breaks
    rich_markup_mode="markdown",
)

#: Command modules, in help order. Each defines ``register(app)``.
COMMAND_MODULES = [
    "demo", "encode", "train_cmd", "index", "search", "eval_cmd", "diagnose_cmd",
    "rag_cmd", "caption_cmd", "prompting_cmd", "serve_cmd", "fuse_cmd",
]

for _name in COMMAND_MODULES:
    importlib.import_module(f"{__name__}.{_name}").register(app)


_BOOL_WORDS = {"true": True, "false": False}


def flag_values(argv: list[str]) -> list[str]:
    """Accept ``--flag true`` / ``--flag false`` (and ``--flag=true``) for on/off flags.

    The help shows every flag as ``<bool>``, so users write a value after it; click would
    take ``true`` as an extra argument. Only the literal words ``true`` / ``false`` after a
    flag of the command being run are read this way.

    Example:
        >>> flag_values(["index", "kb.jsonl", "--store", "kb", "--append", "true", "--no-progress", "false"])
        ['index', 'kb.jsonl', '--store', 'kb', '--append']
    """
    if not argv:
        return argv
    try:
        cmd = typer.main.get_command(app)
        sub = getattr(cmd, "commands", {}).get(argv[0])
    except Exception:  # noqa: BLE001 - never let argument sugar break the real parser
        return argv
    if sub is None:
        return argv
    flags = {o for p in sub.params if getattr(p, "is_flag", False) and not getattr(p, "secondary_opts", None)
             for o in p.opts}
    out, i = [argv[0]], 1
    while i < len(argv):
        a = argv[i]
        if a == "--":
            out += argv[i:]
            break
        name, eq, val = a.partition("=")
        if eq and name in flags and val.lower() in _BOOL_WORDS:
            out += [name] if _BOOL_WORDS[val.lower()] else []
        elif a in flags and i + 1 < len(argv) and argv[i + 1].lower() in _BOOL_WORDS:
            out += [a] if _BOOL_WORDS[argv[i + 1].lower()] else []
            i += 1
        else:
            out.append(a)
        i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mindgap`` console script."""
    try:
        app(args=flag_values(list(sys.argv[1:] if argv is None else argv)), standalone_mode=False)
    except MindgapError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        return 130
    except SystemExit as exc:  # typer/click exit paths (--help, bad usage)
        return int(exc.code or 0) if isinstance(exc.code, int) else 1
    except Exception as exc:  # noqa: BLE001 - click usage errors and friends
        usage, abort = _click_exceptions()
        if isinstance(exc, usage):
            exc.show()
            return int(getattr(exc, "exit_code", 2))
        if isinstance(exc, abort):
            return 1
        raise
    return 0


def _click_exceptions() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """ClickException / Abort classes of click *and* of the copy newer typer versions vendor
    (``typer._click``): a usage error from either must print one message, not a traceback."""
    usage: list[type] = []
    abort: list[type] = []
    for mod in ("click.exceptions", "typer._click.exceptions", "typer.exceptions"):
        try:
            m = importlib.import_module(mod)
        except ImportError:
            continue
        usage += [c for c in [getattr(m, "ClickException", None)] if isinstance(c, type)]
        abort += [c for c in [getattr(m, "Abort", None)] if isinstance(c, type)]
    return tuple(usage), tuple(abort)


def run() -> None:  # pragma: no cover - console script shim
    sys.exit(main())


__all__ = ["app", "main", "console", "err_console"]
