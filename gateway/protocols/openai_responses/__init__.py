"""OpenAI Responses API (``POST /v1/responses``, stateless): parse requests, render responses and streams."""
