"""AnthropicAdapter: the ProviderAdapter for Anthropic Messages upstreams."""

from __future__ import annotations

from collections.abc import Mapping

from gateway.core.request import ChatRequest
from gateway.core.response import ChatResponse
from gateway.errors import UpstreamError
from gateway.providers.anthropic import mapping, request, response, stream
from gateway.providers.base import BuildParams, BuiltRequest, CallContext, ProviderAdapter


class AnthropicAdapter(ProviderAdapter):
    """Anthropic Messages API; the caller adds ``x-api-key``."""

    type = "anthropic"

    def build_request(self, req: ChatRequest, params: BuildParams) -> BuiltRequest:
        return request.build_request(req, params)

    def parse_response(self, body: bytes, ctx: CallContext) -> ChatResponse:
        return response.parse_response(body, ctx, self.provider)

    def stream_decoder(self, ctx: CallContext) -> stream.AnthropicStreamDecoder:
        return stream.AnthropicStreamDecoder(ctx, self.provider)

    def map_error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        return mapping.map_error(self.provider, status, headers, body)
