"""The errors and warnings etlkit raises for bad input: one line, naming the file."""


class EtlError(ValueError):
    """Input etlkit cannot use; the message is one line that names the file and the problem."""


class EtlWarning(UserWarning):
    """Input etlkit can use but the user should know about (flagged records, partial files)."""
