"""The console script's entry point, importing the CLI only when it runs.

run and work spawn their children, and a spawned child imports the parent's
main script again: that script should cost a child nothing it does not use
(click, pika, every command's modules: about 0.2 s of CPU per child).
"""

from __future__ import annotations


def main() -> None:
    from bulk.cli import main as cli_main

    cli_main()
