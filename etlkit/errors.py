"""The errors and warnings etlkit raises for bad input: one line, naming the file."""


class EtlError(ValueError):
    """Input etlkit cannot use; the message is one line that names the file and the problem."""


def check_choice(option: str, value, allowed: tuple[str, ...]) -> None:
    """An option's value must be one of `allowed`; `option` is its CLI flag without the dashes."""
    if value not in allowed:
        raise EtlError(f"--{option} must be one of {', '.join(allowed)}, not {value!r}")


class EtlWarning(UserWarning):
    """Input etlkit can use but the user should know about (flagged records, partial files)."""


def one_line(text: str) -> str:
    """A message or a file name as one line whatever it holds: control characters (a newline
    in a file name) are written as escapes."""
    return text.translate(_ESCAPES)


_ESCAPES = {c: f"\\x{c:02x}" for c in range(32)} | {0x7F: "\\x7f"}
