"""Option parsers shared by the data commands (etlkit/cli.py) and the trainer's (train/cli.py)."""

from pathlib import Path

import typer

from .remote import has_scheme


def local_path(value: str | Path) -> Path:
    """A file or folder on this machine. An empty one is refused: pathlib reads "" as the
    current folder, so `info "$UNSET"` would list, and `extract` read, the ETL files
    below wherever the command was started. A URL is refused as typed: Path would fold its
    `//` (`http:/host/run`) and the command would then call a file that is there missing."""
    return _on_this_machine(value, "name the file or folder", "give a local file or folder "
                            "(train, verify and preview read a dataset from a URL)")


def location(value: str) -> str:
    """A dataset folder or URL, as typed (`remote.check_location` judges it in one error line).
    An empty one is refused, as in `local_path`."""
    if value == "":
        raise typer.BadParameter("is empty; name the dataset folder or URL")
    return value


def out_path(value: str | Path) -> Path:
    """An --out path. An empty one is refused: pathlib reads "" as the current folder, so
    `--out ""` would write into wherever the command was started; a URL (`local_path`) too,
    as etlkit writes only on this machine."""
    return _on_this_machine(value, "name the file or folder to write",
                            "etlkit writes on this machine only: give a local path")


def _on_this_machine(value: str | Path, if_empty: str, if_url: str) -> Path:
    """`value` as a local Path (a default Path as it is); "" and URLs refused, with the hint."""
    if isinstance(value, Path):
        return value
    if value == "":
        raise typer.BadParameter(f"is empty; {if_empty}")
    if has_scheme(value):
        raise typer.BadParameter(f"{value} is a URL; {if_url}")
    return Path(value)


def out_option(help: str):
    """The --out/-o option of a command that writes, refusing an empty path (`out_path`)."""
    return typer.Option("--out", "-o", parser=out_path, metavar="<path>", help=help)


def format_name(value: str) -> str:
    """A --format name. An empty one is refused, as every unknown name is: the reader takes
    an empty name for no name, so `--format ""` would detect the format without a word."""
    if value == "":
        raise typer.BadParameter("is empty; name the dataset (ETL1 ... ETL9G) or leave the "
                                 "option out")
    return value
