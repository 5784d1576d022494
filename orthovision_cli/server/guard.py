"""Connections that cannot starve the service: uvicorn's HTTP/1.1 protocol (h11) with a
deadline for a request's line and headers and a cap on open connections that closes the longest
idle ones first, so idle or slow clients (256 sockets opened and left silent, headers sent a
byte a second) cannot keep a normal client out. Body timeouts are the route's (`read_body`)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


def guarded_protocol(header_timeout: float, max_connections: int) -> type[H11Protocol]:
    class GuardedH11Protocol(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._idle_since = self.loop.time()
            self._arm()
            if len(self.connections) > max_connections:
                self._evict()

        _header_timer: asyncio.TimerHandle | None = None
        _idle_since = 0.0

        def _arm(self) -> None:
            self._header_timer = self.loop.call_later(header_timeout, self._header_timeout)

        def _disarm(self) -> None:
            timer = getattr(self, "_header_timer", None)
            if timer is not None:
                timer.cancel()
                self._header_timer = None

        def _busy(self) -> bool:
            return self.cycle is not None and not self.cycle.response_complete

        def _header_timeout(self) -> None:
            if not self._busy() and not self.transport.is_closing():
                self.transport.close()  # no request within the deadline: a silent or slow peer

        def handle_events(self) -> None:
            super().handle_events()
            if self._busy():
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._idle_since = self.loop.time()
            self._disarm()
            self._arm()  # the next request's headers have the same deadline

        def send_400_response(self, msg: str) -> None:
            """A request h11 cannot parse (`Content-Length: abc`, a bad request line): an
            OperationOutcome like every other error, not uvicorn's plain text."""
            body = json.dumps(
                {
                    "resourceType": "OperationOutcome",
                    "issue": [{"severity": "error", "code": "invalid", "diagnostics": msg}],
                }
            ).encode()
            headers = [
                (b"content-type", b"application/fhir+json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-content-type-options", b"nosniff"),
                (b"cross-origin-resource-policy", b"same-origin"),
                (b"cache-control", b"no-store"),
                (b"connection", b"close"),
            ]
            try:
                for event in (
                    h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                    h11.Data(data=body),
                    h11.EndOfMessage(),
                ):
                    self.transport.write(self.conn.send(event))
            except h11.LocalProtocolError:
                pass  # a response had begun: nothing more can be said
            self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _evict(self) -> None:
            """Close the longest idle connections (never one serving a request) until the
            count is back at the cap; this new one goes first only if no other is idle."""
            idle: list[Any] = sorted(
                (c for c in self.connections if isinstance(c, GuardedH11Protocol) and not c._busy()),
                key=lambda c: c._idle_since,
            )
            while len(self.connections) > max_connections and idle:
                victim = idle.pop(0)
                self.connections.discard(victim)
                victim._disarm()
                victim.transport.close()

    return GuardedH11Protocol
