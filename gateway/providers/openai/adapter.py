"""OpenAIAdapter: the ProviderAdapter for OpenAI Chat Completions and OpenAI-compatible upstreams."""

from __future__ import annotations

from collections.abc import Mapping

from gateway.core.request import ChatRequest
from gateway.core.response import ChatResponse
from gateway.errors import UpstreamError
from gateway.providers.base import BuildParams, BuiltRequest, CallContext, ProviderAdapter
from gateway.providers.openai import mapping, request, response, stream


class OpenAIAdapter(ProviderAdapter):
    """``POST {base_url}/chat/completions`` (base_url ends in ``/v1``); the caller adds ``Authorization``."""

    type = "openai"

    def build_request(self, req: ChatRequest, params: BuildParams) -> BuiltRequest:
        return request.build_request(req, params)

    def parse_response(self, body: bytes, ctx: CallContext) -> ChatResponse:
        return response.parse_response(body, ctx, self.provider)

    def stream_decoder(self, ctx: CallContext) -> stream.OpenAIStreamDecoder:
        return stream.OpenAIStreamDecoder(ctx, self.provider)

    def map_error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        return mapping.map_error(self.provider, status, headers, body)
