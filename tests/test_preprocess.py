"""Preprocessor: each step on its own with exact outputs, the fixed step order, and to_dict/from_dict."""

from __future__ import annotations

import json

import pytest

from emoclf.config import PreprocessConfig
from emoclf.preprocess import LEGACY, Preprocessor

# Every step off: the baseline each test switches one step on from.
OFF = dict(
    normalize_unicode=False, lowercase=False, urls="keep", users="keep", strip_non_word=False, collapse_whitespace=False
)


def only(**steps) -> Preprocessor:
    return Preprocessor(PreprocessConfig(**{**OFF, **steps}))


TRICKY = [
    "",
    "   ",
    "Hey @Bob!! See https://Example.com/a?b=1  and www.Foo.org,  mail me@x.com   NOW\t\n",
    "I FEEL ÜBER-happy 😀 #blessed",
    "@alice@bob @@carol",
    "email@domain.com is not a mention",
    "HTTP://SHOUT.COM/PATH and http:// alone",
    "tabs\tand\nnewlines\r\nand\u00a0nbsp",
    "line;with;semicolons, commas, \"quotes\" and 'apostrophes'",
    "İstanbul ΣΊΣΥΦΟΣ straße",
    "a_b snake_case __dunder__ 123 4.5",
    "rt @user: check www.x.io/~a_b now!!!",
]


def test_all_steps_off_is_identity():
    p = only()
    for text in TRICKY:
        assert p(text) == text


def test_lowercase_only():
    assert only(lowercase=True)("I FEEL ÜBER  Happy") == "i feel über  happy"


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("keep", "see https://Example.com/a?b=1 and www.Foo.org, ok"),
        ("remove", "see  and  ok"),
        ("token", "see http and http ok"),
    ],
)
def test_urls(mode, expected):
    assert only(urls=mode)("see https://Example.com/a?b=1 and www.Foo.org, ok") == expected


def test_url_pattern_is_case_insensitive_and_needs_scheme_or_www():
    p = only(urls="token")
    assert p("HTTP://SHOUT.COM/X WWW.A.B example.com") == "http http example.com"


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("keep", "hi @Bob and @carol_2, mail me@x.com"),
        ("remove", "hi  and , mail me@x.com"),
        ("token", "hi @user and @user, mail me@x.com"),
    ],
)
def test_users(mode, expected):
    # An e-mail address is not a mention: '@' preceded by a word character is left alone.
    assert only(users=mode)("hi @Bob and @carol_2, mail me@x.com") == expected


def test_strip_non_word_only():
    assert only(strip_non_word=True)("wow!! it's #1... (really)") == "wow  it s  1   really "
    # Underscores and non-ASCII letters are word characters and survive.
    assert only(strip_non_word=True)("snake_case über") == "snake_case über"


def test_collapse_whitespace_only():
    assert only(collapse_whitespace=True)("  a \t b\n\nc\r\n d\u00a0e  ") == "a b c d e"


def test_default_pipeline_exact():
    p = Preprocessor()
    text = "Hey @Bob!! See https://Example.com/a?b=1  and www.Foo.org,  mail me@x.com   NOW\t\n"
    assert p(text) == "hey user see http and http mail me x com now"


def test_order_urls_and_users_before_case_and_symbols():
    # URLs and mentions are replaced before symbol stripping (which would otherwise break them up).
    p = Preprocessor(PreprocessConfig(urls="token", users="token", strip_non_word=True))
    assert p("Look: https://x.com/@Bob?q=1 @Ann!") == "look http user"
    p = Preprocessor(PreprocessConfig(urls="keep", users="keep", strip_non_word=True))
    assert p("Look: https://x.com/@Bob?q=1 @Ann!") == "look https x com bob q 1 ann"


def test_remove_then_collapse_leaves_no_double_spaces():
    p = Preprocessor(PreprocessConfig(urls="remove", users="remove"))
    assert p("@a hello   http://x.y  world @b") == "hello world"
    assert p("http://only.url") == ""


def test_batch_equals_calls():
    p = Preprocessor()
    assert p.batch(TRICKY) == [p(t) for t in TRICKY]
    assert p.batch(iter(["A", "B"])) == ["a", "b"]


def test_default_config_is_used_when_none():
    assert Preprocessor().config == PreprocessConfig()
    assert Preprocessor(None).to_dict() == PreprocessConfig().__dict__


@pytest.mark.parametrize(
    "config",
    [
        PreprocessConfig(),
        PreprocessConfig(lowercase=False, urls="remove", users="keep", strip_non_word=True, collapse_whitespace=False),
        PreprocessConfig(urls="keep", users="remove", strip_non_word=True),
    ],
)
def test_to_dict_from_dict_round_trip(config):
    original = Preprocessor(config)
    raw = original.to_dict()
    assert raw == {
        "lowercase": config.lowercase,
        "urls": config.urls,
        "users": config.users,
        "strip_non_word": config.strip_non_word,
        "collapse_whitespace": config.collapse_whitespace,
        "normalize_unicode": config.normalize_unicode,
    }
    # As saved in emoclf.json: through JSON and back.
    rebuilt = Preprocessor.from_dict(json.loads(json.dumps(raw)))
    assert rebuilt.config == config
    assert rebuilt.batch(TRICKY) == original.batch(TRICKY)


def test_from_dict_of_a_model_saved_before_a_step_existed_leaves_that_step_off():
    # A model saved before normalize_unicode existed: its dict lacks the key, and it must predict as evaluated.
    old = {"lowercase": True, "urls": "token", "users": "token", "strip_non_word": True, "collapse_whitespace": True}
    assert Preprocessor.from_dict(old).config == PreprocessConfig(normalize_unicode=False)
    assert Preprocessor.from_dict(old)("nai\u0308ve") == "nai ve"  # exactly as such a model was trained
    assert Preprocessor.from_dict(None).config == Preprocessor.from_dict({}).config == PreprocessConfig(**LEGACY)


NFD = "nai\u0308ve Cafe\u0301"  # combining diaeresis and acute accent
NFC = "na\u00efve Caf\u00e9"  # precomposed


def test_unicode_is_normalised_to_nfc_before_symbols_are_stripped():
    assert only(normalize_unicode=True)(NFD) == NFC
    assert Preprocessor()(NFD) == Preprocessor()(NFC) == "na\u00efve caf\u00e9"
    # Without it, stripping non-word characters splits a letter from its accent.
    assert only(strip_non_word=True)(NFD) == "nai ve Cafe "
