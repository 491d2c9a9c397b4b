"""The version of sklstm, in one place (the packaging metadata reads it too)."""

__version__ = "0.1.0.dev0"
