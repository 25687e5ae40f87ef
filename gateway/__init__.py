"""arouter: a self-hosted LLM API router."""

__version__ = "0.1.0"
