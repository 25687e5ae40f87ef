"""The offline tokenizer counts like tiktoken's cl100k_base, with no network."""

from __future__ import annotations

from gateway.tokenizer import Tokenizer


def test_known_counts() -> None:
    t = Tokenizer()
    assert t.count("tiktoken is great!") == 6  # tiktoken's own README example: [83, 1609, 5963, 374, 2294, 0]
    assert t.count("") == 0
    assert t.count("Hello, world! How are you today?") == 9
    assert t.count("<|endoftext|>") > 1  # special-token text is counted as text, never as the special token
