"""--help epilogs with examples: every subcommand's help ends with one or two example command lines, each
with what it does. Here, not in `cli`, because the modules that add their own subcommands (`datasets`'
`data`, the report's `findings`) use them too and no module of the package imports `cli`."""
from __future__ import annotations

import argparse


def examples(*pairs: tuple[str, str]) -> str:
    """A --help epilog: each example command with what it does (HelpWithExamples keeps its lines)."""
    return "examples:\n" + "\n".join(f"  {command}\n      {what}" for command, what in pairs)


class HelpWithExamples(argparse.HelpFormatter):
    """argparse's formatter, except that the examples epilog keeps its lines as written."""

    def _fill_text(self, text, width, indent):
        if text.startswith("examples:"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)
