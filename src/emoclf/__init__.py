"""emoclf: fine-tune BERT-family models for short-text classification, honestly evaluated."""

from emoclf.config import Config

__all__ = ["Config", "__version__"]
__version__ = "0.1.0"
