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


class EmptyTextError(DataError):
    """Texts that the model's preprocessing leaves empty: there is nothing to classify, so no label is given."""

    def __init__(self, message: str, positions: list[int]) -> None:
        super().__init__(message)
        self.positions = positions


class TrainingDivergedError(EmoclfError):
    """The loss or the gradients stopped being finite numbers; no model is saved."""


class PredictionError(EmoclfError):
    """A loaded model computed something that is not a probability (NaN, infinity)."""


class ServeError(EmoclfError):
    """The server cannot start (its address is taken) or lost a worker process."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a training after its checkpoint; the message says how to continue."""


class RunStopped(Exception):
    """A training stopped on purpose before its end (a search trial pruned for its poor validation score):
    not a failure, so its tracking run ends FINISHED, with ``tags`` saying why."""

    def __init__(self, message: str, tags: dict[str, str]) -> None:
        super().__init__(message)
        self.tags = tags
