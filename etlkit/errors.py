"""The errors and warnings etlkit raises for bad input: one line, naming the file."""

import math


class EtlError(ValueError):
    """Input etlkit cannot use; the message is one line that names the file and the problem."""


def check_choice(option: str, value, allowed: tuple[str, ...]) -> None:
    """An option's value must be one of `allowed`; `option` is its CLI flag without the dashes."""
    if value not in allowed:
        raise EtlError(f"--{option} must be one of {', '.join(allowed)}, not {value!r}")


def check_items(option: str, items: list[str] | None) -> None:
    """A list option's values (None: not given) must not be empty: `--models ""` must not mean
    every model, nor `--files ""` a pattern that matches no file; `option` is its CLI flag
    without the dashes."""
    if items is None:
        return
    if not any(item.strip() for item in items):
        raise EtlError(f"--{option} is empty")
    if not all(item.strip() for item in items):
        raise EtlError(f"--{option} has an empty item")


def comma_list(option: str, value: str) -> list[str]:
    """A comma-separated option's items, refusing an empty list or item (`check_items`)."""
    items = [item.strip() for item in value.split(",")]
    check_items(option, items)
    return items


def is_integer(value) -> bool:
    """An int, not a bool (JSON's and YAML's true is one to Python)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_finite_number(value) -> bool:
    """An int or float that is finite: not a bool, NaN or an infinity."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_integer(option: str, value, low: int = 0, high: int | None = None) -> None:
    """An option's value must be an int (not a bool) from `low` to `high` (None: no limit);
    `option` is its CLI flag without the dashes."""
    if not (is_integer(value) and value >= low and (high is None or value <= high)):
        wanted = ("a non-negative integer" if low == 0 else "a positive integer" if low == 1
                  else f"an integer of at least {low}") + (f" up to {high}" if high else "")
        raise EtlError(f"--{option} must be {wanted}, not {value!r}")


def check_real(option: str, value, low: float = 0.0, high: float = math.inf, *,
               low_open: bool = False, high_open: bool = True) -> None:
    """An option's value must be a finite number (not a bool, NaN or infinity) in the interval
    from `low` to `high`, each end closed unless `..._open`; `option` is its CLI flag without
    the dashes."""
    if not (is_finite_number(value) and (low < value if low_open else low <= value)
            and (value < high if high_open else value <= high)):
        if math.isinf(high) and low == 0:
            wanted = "a finite positive number" if low_open else "a finite non-negative number"
        else:
            wanted = (f"in {'(' if low_open else '['}{low:g}, {high:g}"
                      f"{')' if high_open else ']'}")
        raise EtlError(f"--{option} must be {wanted}, not {value!r}")


class EtlWarning(UserWarning):
    """Input etlkit can use but the user should know about (flagged records, partial files)."""


def one_line(text: str) -> str:
    """A message or a file name as one line whatever it holds: control characters (a newline
    in a file name) are written as escapes."""
    return text.translate(_ESCAPES)


_ESCAPES = {c: f"\\x{c:02x}" for c in range(32)} | {0x7F: "\\x7f"}
