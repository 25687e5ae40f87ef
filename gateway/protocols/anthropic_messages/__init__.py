"""Anthropic Messages (``POST /v1/messages``, ``/v1/messages/count_tokens``): parse requests, render
responses, streams and errors."""
