"""The package's version, in a module of its own so that any floor of the package can name
it without importing the library's entry points."""

__version__ = "0.1.0"
