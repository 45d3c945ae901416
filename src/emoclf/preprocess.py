"""Text cleaning that is saved with every model and applied identically at prediction time.

The steps are data (a ``PreprocessConfig``), not code, so a model folder, an ONNX export or an
MLflow model all rebuild the exact same function from their ``emoclf.json``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import asdict

from emoclf.config import PreprocessConfig

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_USER = re.compile(r"(?<!\w)@\w+")
_NON_WORD = re.compile(r"[^\w\s]+")
_SPACES = re.compile(r"\s+")
_REPLACEMENT = {"urls": "http", "users": "@user"}
# What a model saved before a step existed did without it: its saved dict lacks the key, and it must go on
# predicting exactly as it was evaluated.
LEGACY = {"normalize_unicode": False}


def nfc(text: str) -> str:
    """``text`` in Unicode NFC: "nai\u0308ve" (i + combining diaeresis) and "na\u00efve" become one string."""
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)


class Preprocessor:
    """Callable cleaner built from a ``PreprocessConfig``; order: Unicode form, URLs, users, case, symbols, spaces."""

    def __init__(self, config: PreprocessConfig | None = None) -> None:
        self.config = config or PreprocessConfig()

    def __call__(self, text: str) -> str:
        c = self.config
        if c.normalize_unicode:
            # Before anything else: stripping symbols would split a letter from its combining accent ("nai ve").
            text = nfc(text)
        # URLs and mentions go first: lower-casing or symbol stripping would break their patterns.
        for name, pattern in (("urls", _URL), ("users", _USER)):
            mode = getattr(c, name)
            if mode != "keep":
                text = pattern.sub("" if mode == "remove" else _REPLACEMENT[name], text)
        if c.lowercase:
            text = text.lower()
        if c.strip_non_word:
            text = _NON_WORD.sub(" ", text)
        if c.collapse_whitespace:
            text = _SPACES.sub(" ", text).strip()
        return text

    def batch(self, texts: Iterable[str]) -> list[str]:
        return [self(t) for t in texts]

    def to_dict(self) -> dict:
        return asdict(self.config)

    @classmethod
    def from_dict(cls, raw: dict | None) -> Preprocessor:
        """The preprocessor saved with a model; a step its dict lacks (an older model) stays off (``LEGACY``)."""
        return cls(PreprocessConfig(**{**LEGACY, **(raw or {})}))
