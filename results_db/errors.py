"""The store's one-line errors, in a leaf module: callers catch them without loading
SQLAlchemy (the modules that raise them need it)."""

from __future__ import annotations


class StoreError(Exception):
    """The database cannot be used: bad URL, unreachable, or schema behind. Message is safe."""


class QueryError(ValueError):
    """A filter the store cannot apply (unknown field); the message says what is valid."""
