"""etlkit: the ETL Character Database decoded, correctly labelled, fast."""

from .errors import EtlError, EtlWarning
from .reader import iter_read, read, read_records, resolve_format
from .records import RecordBatch
from .shards import DatasetInfo, ShardSet, open_shards

__version__ = "0.1.0"
__all__ = ["DatasetInfo", "EtlError", "EtlWarning", "RecordBatch", "ShardSet", "iter_read",
           "open_shards", "read", "read_records", "resolve_format", "__version__"]
