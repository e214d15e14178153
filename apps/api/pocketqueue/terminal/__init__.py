"""The queue seen from a terminal: `stats`, `jobs`, `inspect` and the live `monitor` (rich).

commands.py parses each subcommand and reads Redis; views.py draws; monitor.py runs the
live screen.
"""

from pocketqueue.terminal.commands import add_commands

__all__ = ["add_commands"]
