"""What the commands share on the terminal: exit codes and the progress bar."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

EXIT_OK = 0
EXIT_FAILED = 1
# The shell's code for a process ended by SIGINT (128 + 2): scripts tell Ctrl-C from a failure.
EXIT_INTERRUPTED = 130


def progress_bar(console: Console) -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        console=console,
    )
