"""A progress bar per epoch with loss, accuracy and images/s (rich, which typer brings)."""

from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress


class Progress:
    """Updated only when metrics are fetched anyway, so it adds no device synchronisation."""

    def __init__(self, enabled: bool):
        self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
                                 TimeRemainingColumn(), disable=not enabled, transient=True)
        self._task = None

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        self._bar.start()
        self._task = self._bar.add_task(f"epoch {epoch + 1}/{epochs}", total=steps, stats="")

    def update(self, steps: int, record: dict) -> None:
        stats = (f"loss {record['loss']:.4f} acc {record['accuracy']:.1%} "
                 f"{record['images_per_s']:,.0f} img/s")
        self._bar.update(self._task, advance=steps, stats=stats)

    def end_epoch(self) -> None:
        self._bar.remove_task(self._task)
        self._bar.stop()
