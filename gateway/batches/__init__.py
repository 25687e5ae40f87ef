"""Anthropic Message Batches: the endpoints (``handlers``), the background runner (``runner``) and the
gateway-internal authentication the runner uses to call ``POST /v1/messages`` on loopback (``internal``).
"""
