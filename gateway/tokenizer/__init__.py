"""Offline token counting: tiktoken's cl100k_base ranks ship inside the package (tiktoken would
otherwise download them at run time, which a locked-down host cannot). The file is OpenAI's
published ``cl100k_base.tiktoken``; its SHA-256 is checked when it loads."""

from __future__ import annotations

import base64
import hashlib
from importlib import resources

import tiktoken

CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
# The split pattern and special tokens of cl100k_base, as tiktoken_ext.openai_public defines them.
_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|"""
    r"""\s+(?!\S)|\s"""
)
_SPECIAL = {"<|endoftext|>": 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260, "<|endofprompt|>": 100276}


class Tokenizer:
    """Counts tokens with cl100k_base (built once per process, on first use)."""

    def __init__(self) -> None:
        self._encoding: tiktoken.Encoding | None = None

    def _load(self) -> tiktoken.Encoding:
        if self._encoding is None:
            data = resources.files("gateway.tokenizer").joinpath("cl100k_base.tiktoken").read_bytes()
            if hashlib.sha256(data).hexdigest() != CL100K_SHA256:
                raise RuntimeError("gateway/tokenizer/cl100k_base.tiktoken is damaged (SHA-256 mismatch)")
            ranks = {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in data.splitlines())}
            self._encoding = tiktoken.Encoding(
                name="cl100k_base", pat_str=_PATTERN, mergeable_ranks=ranks, special_tokens=_SPECIAL
            )
        return self._encoding

    def count(self, text: str) -> int:
        """Tokens in ``text`` (special-token text counts as ordinary text)."""
        return len(self._load().encode_ordinary(text))
