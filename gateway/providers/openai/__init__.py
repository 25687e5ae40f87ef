"""OpenAI Chat Completions upstreams (``POST {base_url}/chat/completions``), and OpenAI-compatible servers."""
