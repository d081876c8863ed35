"""What the commands share on the terminal: Ctrl-C's exit code and the progress bar."""

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

# The shell's code for a process ended by SIGINT (128 + 2): scripts tell Ctrl-C from a failure.
EXIT_INTERRUPTED = 130


def progress_bar() -> Progress:
    """On stderr: stdout holds only the summary."""
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, console=Console(stderr=True))
