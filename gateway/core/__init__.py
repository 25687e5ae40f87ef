"""The canonical chat model: requests, responses and stream events that every protocol and provider
parses into and renders from. Pure: imports only the standard library and ``gateway.errors``."""
