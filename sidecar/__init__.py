"""Forensic logging sidecar: signed, stored and KMS-reported log events."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("forensic-logging-sidecar")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
