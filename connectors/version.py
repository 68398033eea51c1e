"""The installed lakeport version, written into commit metadata and dead-letter rows."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lakeport")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+source"
