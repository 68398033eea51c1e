"""lakeport's engine: plan offset ranges, read them from Kafka, decode to Arrow, write to Delta.

Nothing in this package knows about Dagster; `pipelines/` is a thin layer over it.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lakeport")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+source"
