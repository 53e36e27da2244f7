"""The errors and warnings etlkit raises for bad input: one line, naming the file."""


class EtlError(ValueError):
    """Input etlkit cannot use; the message is one line that names the file and the problem."""


class EtlWarning(UserWarning):
    """Input etlkit can use but the user should know about (flagged records, partial files)."""


def check_choice(option: str, value: str, allowed: tuple[str, ...]) -> None:
    """An unknown option value as one error line (typer's own check prints a usage box)."""
    if value not in allowed:
        raise EtlError(f"--{option} must be one of {', '.join(allowed)}, not {value!r}")
