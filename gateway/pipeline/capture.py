"""The bytes a stream sent its client, held for the answers worth keeping (an Idempotency-Key's, the
response cache's), up to a limit: past it they are let go (``over``) and the answer is not kept."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Capture:
    limit: int
    sent: list[bytes] = field(default_factory=list)
    size: int = 0
    over: bool = False

    def keep(self, data: bytes) -> None:
        if self.over:
            return
        self.size += len(data)
        if self.size > self.limit:
            self.over = True
            self.sent.clear()
        else:
            self.sent.append(data)

    def body(self) -> bytes | None:
        """What was sent, or None when it went past the limit."""
        return None if self.over else b"".join(self.sent)


def widened(capture: Capture | None, limit: int) -> Capture:
    """A capture holding at least ``limit`` bytes (the request's own if it has one already)."""
    if capture is None:
        return Capture(limit)
    capture.limit = max(capture.limit, limit)
    return capture
