"""Anthropic Messages API upstreams (``POST /v1/messages``)."""
