"""etlkit: the ETL Character Database decoded, correctly labelled, fast."""

from .errors import EtlError, EtlWarning
from .reader import iter_read, read, resolve_format
from .records import RecordBatch

__version__ = "0.1.0"
__all__ = ["EtlError", "EtlWarning", "RecordBatch", "iter_read", "read", "resolve_format",
           "__version__"]
