"""What every verb shares, declared once: the recipe and `key=value` override positionals, `-o/--output`,
`--overwrite`, `--quiet` and `--debug`, the one override parser, and a parser whose usage errors are one line.

Each flag has one meaning in every verb that takes it: `--output DIR` is where the verb writes (for the
verbs that make a run folder it *is* the run folder, the recipe's `output_dir`), `--overwrite` replaces
what is there, `--quiet` hides progress bars. Kept free of heavy imports so that `honed --help` is fast."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, NoReturn

from honed.errors import HonedError


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors (unknown flag, bad choice, missing argument) print one line
    and exit 2, like every other bad input to honed; argparse's default prints the usage block too."""

    def error(self, message: str) -> NoReturn:
        line = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {line} (see `{self.prog} --help`)\n")


def add_debug(parser: argparse.ArgumentParser) -> None:
    """`--debug` before or after the verb: SUPPRESS keeps a verb's parser from resetting the top-level value."""
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")


def add_recipe(parser: argparse.ArgumentParser, help: str = "recipe YAML file (see `honed recipes`)") -> None:
    parser.add_argument("recipe", help=help)


def add_overrides(parser: argparse.ArgumentParser, example: str = "optim.lr=3e-5") -> None:
    """Dotted `key=value` overrides of the recipe, read by `parse_overrides` (values are YAML)."""
    parser.add_argument(
        "overrides", nargs="*", default=[], metavar="key=value", help=f"dotted recipe overrides, e.g. {example}"
    )


def add_output(
    parser: argparse.ArgumentParser, help: str, *aliases: str, default: str | None = None, metavar: str = "DIR"
) -> None:
    """`-o/--output`: where the verb writes; `help` says what the default is for this verb."""
    parser.add_argument("-o", "--output", *aliases, default=default, metavar=metavar, help=help)


def add_overwrite(parser: argparse.ArgumentParser, help: str = "replace an existing run folder") -> None:
    parser.add_argument("--overwrite", action="store_true", help=help)


def add_quiet(parser: argparse.ArgumentParser, help: str = "no progress bars") -> None:
    parser.add_argument("--quiet", action="store_true", help=help)


def add_run_verb(
    parser: argparse.ArgumentParser,
    *,
    recipe: str | None = None,
    example: str = "optim.lr=3e-5",
    output: str = "run folder (default: the recipe's output_dir, else runs/NAME)",
    overwrite: str = "replace an existing run folder",
    quiet: str = "no progress bars",
) -> None:
    """The arguments of a verb that runs a recipe into a run folder: recipe, overrides, --output,
    --overwrite, --quiet (the help texts say what each means for this verb)."""
    add_recipe(parser, *(() if recipe is None else (recipe,)))
    add_overrides(parser, example)
    add_output(parser, output)
    add_overwrite(parser, overwrite)
    add_quiet(parser, quiet)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`["optim.lr=3e-5", "data.labels=null"]` -> `{"optim.lr": 3e-05, "data.labels": None}`: the one
    override parser of the CLI; dotted keys go to the API unchanged (`fit(recipe, overrides=...)`)."""
    from honed.recipe import parse_override

    return dict(parse_override(item) for item in items)


def run_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The verb's overrides, with `--output DIR` as the run folder (`output_dir`); --output wins over output_dir=."""
    overrides = dict(args.overrides)
    if getattr(args, "output", None):
        overrides["output_dir"] = str(args.output)
    return overrides


def check_report_dir(folder: str | Path | None, overwrite: bool) -> None:
    """Refuse to replace a report in `folder` (evaluate --report, report --output) without --overwrite."""
    if folder and (Path(folder) / "report.html").exists() and not overwrite:
        raise HonedError(f"--report/--output: '{folder}' already holds a report.html; pass --overwrite to replace it")


def is_main_process() -> bool:
    """True outside a distributed launch and on its rank 0: only one process prints the summary."""
    import os

    return os.environ.get("LOCAL_RANK", "0") == "0"
