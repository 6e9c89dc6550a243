"""The package version, in a module of its own so that run folders can record it without importing
the whole public API (:mod:`attnzoo` sits above everything it re-exports)."""

__version__ = "0.1.0"
