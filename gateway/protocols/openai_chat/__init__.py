"""OpenAI Chat Completions (``POST /v1/chat/completions``): parse requests, render responses and streams."""
