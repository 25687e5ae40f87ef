"""``POST /v1/messages/count_tokens``: an input-token estimate with a caller-supplied tokenizer.

@see https://docs.anthropic.com/en/api/messages-count-tokens

The sum is: system and message text; ``tool_use`` name + input JSON; ``tool_result`` text; tool
name + description + input schema JSON; plus fixed overheads for the turn and role markers the
tokenizer does not see: ``REQUEST_OVERHEAD`` once, ``MESSAGE_OVERHEAD`` per message (system included),
``TOOL_OVERHEAD`` per tool (plus ``TOOLS_PREAMBLE`` once when tools are given, for the tool-use
system prompt Anthropic adds), ``IMAGE_TOKENS`` per image (Anthropic's figure for a ~1.15 megapixel
image; the real cost is width*height/750). Thinking from earlier turns is not counted (Anthropic
strips it from the context). It is an estimate: exact only when ``count`` is the model's tokenizer.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

from gateway.core.request import ChatRequest, ImagePart, TextPart, ToolCallPart, ToolResultPart

REQUEST_OVERHEAD = 3
MESSAGE_OVERHEAD = 4
TOOL_OVERHEAD = 8
TOOLS_PREAMBLE = 300
IMAGE_TOKENS = 1600


def count_request_tokens(req: ChatRequest, count: Callable[[str], int]) -> int:
    """Estimated input tokens of ``req``; ``count(text)`` is the tokenizer."""
    total = REQUEST_OVERHEAD
    for msg in req.messages:
        total += MESSAGE_OVERHEAD
        for part in msg.parts:
            if isinstance(part, TextPart):
                total += count(part.text)
            elif isinstance(part, ImagePart):
                total += IMAGE_TOKENS
            elif isinstance(part, ToolCallPart):
                total += count(part.name) + count(part.arguments)
            elif isinstance(part, ToolResultPart):
                for inner in part.content:
                    total += count(inner.text) if isinstance(inner, TextPart) else IMAGE_TOKENS
    if req.tools:
        total += TOOLS_PREAMBLE
    for tool in req.tools:
        total += TOOL_OVERHEAD + count(tool.name)
        if tool.description:
            total += count(tool.description)
        if tool.parameters is not None:
            total += count(orjson.dumps(tool.parameters, option=orjson.OPT_SORT_KEYS).decode())
    return total


def render_count(input_tokens: int) -> dict[str, int]:
    """The count_tokens response body."""
    return {"input_tokens": input_tokens}
