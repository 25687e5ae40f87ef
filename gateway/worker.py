"""The gunicorn worker class: aiohttp's uvloop worker, listening with the configured backlog.

aiohttp's worker starts its sites with aiohttp's default backlog (128) on the socket the gunicorn
master opened with ``backlog``; all workers share that socket, so the last ``listen`` wins and a
burst of new connections beyond 128 is dropped by the kernel. Once the sites are up (the first
heartbeat), the socket listens again with the configured backlog.
"""

from __future__ import annotations

from aiohttp.worker import GunicornUVLoopWebWorker


class Worker(GunicornUVLoopWebWorker):
    _backlog_set = False

    def notify(self) -> None:
        if self.booted and not self._backlog_set:
            self._backlog_set = True
            for sock in self.sockets:
                sock.listen(self.cfg.backlog)
        super().notify()
