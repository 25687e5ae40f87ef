"""Gemini generateContent upstreams (``/v1beta/models/{model}:generateContent`` and ``:streamGenerateContent``)."""
