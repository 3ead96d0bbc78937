"""docs/cli.md, written from the parser itself: ``python -m fastnn._cli_doc > docs/cli.md``.

The test suite checks that the committed page equals :func:`render`, so no
flag can be missing from it or described there in a stale way.
"""

import argparse
import functools

from . import _cli_args, cli

WIDTH = 96  # help text wrapped at a fixed width, whatever the terminal


def _help(parser):
    parser.formatter_class = functools.partial(_cli_args._DefaultsFormatter, width=WIDTH)
    return parser.format_help().rstrip()


def subcommands(parser=None):
    """{name: sub-parser} of ``fastnn``'s commands, in the order ``--help`` lists them."""
    parser = parser or cli.build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return dict(action.choices)


def render():
    """The command-line reference page, as Markdown."""
    parser = cli.build_parser()
    parser.formatter_class = functools.partial(argparse.RawDescriptionHelpFormatter,
                                               width=WIDTH)
    lines = ["# Command line", "",
             ("Generated from fastnn's argument parser (`python -m fastnn._cli_doc > "
              "docs/cli.md`); `fastnn COMMAND --help` prints the same."), "",
             "```text", parser.format_help().rstrip(), "```"]
    for name, sub in subcommands(parser).items():
        lines += ["", f"## fastnn {name}", "", "```text", _help(sub), "```"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
