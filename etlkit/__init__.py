"""etlkit: the ETL Character Database decoded, correctly labelled, fast.

The names below are imported on first use, so that `import etlkit` (and the `etlkit`
command's first instant, see `etlkit.entry`) costs nothing until they are needed."""

import importlib

__version__ = "0.1.0"

#: public name -> the module that defines it
_NAMES = {"EtlError": "errors", "EtlWarning": "errors", "iter_read": "reader", "read": "reader",
          "read_records": "reader", "resolve_format": "reader", "RecordBatch": "records",
          "DatasetInfo": "shards", "ShardSet": "shards", "open_shards": "shards"}
__all__ = [*sorted(_NAMES), "__version__"]


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    try:  # a submodule, e.g. etlkit.formats after a bare `import etlkit`
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError:
        raise AttributeError(f"module 'etlkit' has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted({*globals(), *_NAMES})
