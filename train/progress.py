"""A progress bar per epoch with loss, accuracy and images/s (rich, which typer brings)."""

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress


class Progress:
    """Updated only when metrics are fetched anyway, so it adds no device synchronisation.

    Drawn on stderr, beside the run's messages, and only when that is a terminal: a bar that
    is not live still ends each epoch with a newline, which a redirected log does not want."""

    def __init__(self, enabled: bool):
        console = Console(stderr=True)
        self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
                                 TimeRemainingColumn(), console=console, transient=True,
                                 disable=not (enabled and console.is_terminal))
        self._task = None

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        self._bar.start()
        self._task = self._bar.add_task(f"epoch {epoch + 1}/{epochs}", total=steps, stats="")

    def update(self, steps: int, record: dict) -> None:
        """Advance by `steps` and show a metrics.jsonl train record's numbers."""
        stats = (f"loss {record['train/loss']:.4f} acc {record['train/accuracy']:.1%} "
                 f"{record['train/images_per_s']:,.0f} img/s")
        self._bar.update(self._task, advance=steps, stats=stats)

    def end_epoch(self) -> None:
        self._bar.remove_task(self._task)
        self._bar.stop()
