"""The project's exception types. Every one carries a message a user can act on."""


class EmoclfError(Exception):
    """Base class: the CLI prints these as one line (no traceback unless --debug)."""


class ConfigError(EmoclfError, ValueError):
    """A setting is missing, of the wrong type or contradicts another."""


class DataError(EmoclfError, ValueError):
    """Input data cannot be read or fails validation; the message names file, row and column."""


class ModelLoadError(EmoclfError):
    """A model folder or URI is missing, truncated or inconsistent."""


class TrackingError(EmoclfError):
    """The MLflow tracking store cannot be reached or written."""


class ExportError(EmoclfError):
    """An export lost more quality than allowed, or its runtime is missing."""
