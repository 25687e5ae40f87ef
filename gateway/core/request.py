"""The canonical chat request: what every inbound protocol parses into and every adapter renders from.

Frozen, slotted dataclasses: built once per request, never mutated. ``None`` always means "not given";
renderers send only what the caller set, so provider defaults stay provider defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]
JSONObject = Mapping[str, Any]

# The ``format`` of a reasoning signature: signatures only make sense to the provider that made them.
ANTHROPIC_REASONING = "anthropic-claude-v1"
GEMINI_REASONING = "google-gemini-v1"


@dataclass(slots=True, frozen=True, kw_only=True)
class TextPart:
    """Plain text; ``cache_control`` is an Anthropic-style breakpoint passed through as given."""

    text: str
    cache_control: JSONObject | None = None


@dataclass(slots=True, frozen=True, kw_only=True)
class ImagePart:
    """An image by http(s) URL or by base64 ``data`` with its media type."""

    url: str | None = None
    data: str | None = None
    media_type: str | None = None
    detail: str | None = None
    cache_control: JSONObject | None = None


@dataclass(slots=True, frozen=True, kw_only=True)
class ToolCallPart:
    """The assistant asked for a tool; ``arguments`` is the raw JSON text, never re-serialized."""

    call_id: str
    name: str
    arguments: str
    signature: str | None = None  # Gemini thoughtSignature carried on the functionCall part


@dataclass(slots=True, frozen=True, kw_only=True)
class ToolResultPart:
    """A tool's answer (role "tool"); ``name`` is the tool's name when known (Gemini needs it)."""

    call_id: str
    content: tuple[TextPart | ImagePart, ...]
    name: str | None = None
    is_error: bool = False


@dataclass(slots=True, frozen=True, kw_only=True)
class ReasoningPart:
    """Thinking text with its opaque signature; ``data`` holds redacted (encrypted) thinking."""

    text: str = ""
    signature: str | None = None
    data: str | None = None
    format: str | None = None  # ANTHROPIC_REASONING, GEMINI_REASONING, or None when unknown

    @property
    def redacted(self) -> bool:
        return self.data is not None


Part = TextPart | ImagePart | ToolCallPart | ToolResultPart | ReasoningPart
ContentPart = TextPart | ImagePart


@dataclass(slots=True, frozen=True, kw_only=True)
class Message:
    """One turn. System messages stay in place; renderers hoist them where the target needs it."""

    role: Role
    parts: tuple[Part, ...]
    name: str | None = None

    def text(self) -> str:
        """All text parts joined (no separator)."""
        return "".join(p.text for p in self.parts if isinstance(p, TextPart))


@dataclass(slots=True, frozen=True, kw_only=True)
class ToolSpec:
    """A function the model may call; ``parameters`` is a JSON Schema object."""

    name: str
    description: str | None = None
    parameters: JSONObject | None = None
    strict: bool | None = None
    cache_control: JSONObject | None = None


@dataclass(slots=True, frozen=True)
class NamedToolChoice:
    """Force one named tool."""

    name: str


ToolChoice = Literal["auto", "none", "required"] | NamedToolChoice


@dataclass(slots=True, frozen=True, kw_only=True)
class ResponseFormat:
    """Structured output: ``json_object`` (any JSON object) or ``json_schema`` (this schema)."""

    type: Literal["text", "json_object", "json_schema"]
    schema: JSONObject | None = None
    name: str | None = None
    description: str | None = None
    strict: bool | None = None


@dataclass(slots=True, frozen=True, kw_only=True)
class Sampling:
    """Sampling and stop settings; ``None`` means "the provider's default"."""

    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None


ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]


@dataclass(slots=True, frozen=True, kw_only=True)
class Reasoning:
    """Reasoning settings (OpenRouter's ``reasoning`` object): an effort level or a token budget."""

    effort: ReasoningEffort | None = None
    max_tokens: int | None = None
    enabled: bool | None = None
    exclude: bool = False

    @property
    def active(self) -> bool:
        """Whether the caller asked for reasoning at all."""
        if self.enabled is False or self.effort == "none":
            return False
        return self.enabled is True or self.effort is not None or self.max_tokens is not None


@dataclass(slots=True, frozen=True, kw_only=True)
class ChatRequest:
    """One chat call, independent of the protocol it came in on.

    ``extra`` is the escape hatch: ``extra["anthropic"]`` / ``extra["gemini"]`` are merged shallowly into
    that provider's body; ``extra["openai"]`` holds OpenAI-only parameters (logit_bias, n, ...) that
    other providers drop with a warning.
    """

    model: str | None
    messages: tuple[Message, ...]
    sampling: Sampling = Sampling()
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    reasoning: Reasoning | None = None
    stream: bool = False
    include_usage: bool = False
    user: str | None = None
    cache_control: JSONObject | None = None
    extra: Mapping[str, JSONObject] = field(default_factory=dict)
