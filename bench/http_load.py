"""A lean HTTP/1.1 load generator for the API benchmark's lookups: keep-alive GETs on asyncio streams.

On two shared cores the load generator's own CPU comes out of the API's:
an HTTP client library (httpx, aiohttp) spends more per request than the API
answering a cached balance, so the lookup figure would measure the client.
``hammer`` keeps ``clients`` connections, each sending one GET at a time
(the next when the answer is read: a closed loop, like ``wrk -c``), and
reads each answer by its ``Content-Length``. A tool made for the job
(``wrk``) is not a Python package; this is the smallest client that is
correct for the API's answers (no chunked bodies, no redirects). An answer
other than 200 stops the run with its status line.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

HEADER_END = b"\r\n\r\n"
CONTENT_LENGTH = b"content-length:"
OK_STATUS = b"200"


class LoadError(RuntimeError):
    """An answer the load generator did not expect (the API refused or failed a request)."""


@dataclass(frozen=True)
class Hammered:
    timings_ms: list[float]
    requests_per_s: float


async def hammer(base_url: str, headers: dict[str, str], paths: list[str], clients: int,
                 seconds: float) -> Hammered:
    """``clients`` keep-alive connections GETting ``paths`` in turn for ``seconds``."""
    address = urlsplit(base_url)
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    requests = [f"GET {path} HTTP/1.1\r\nHost: {address.netloc}\r\n{extra}\r\n".encode() for path in paths]
    timings: list[float] = []
    stop_at = time.monotonic() + seconds

    async def client(offset: int) -> None:
        reader, writer = await asyncio.open_connection(address.hostname, address.port)
        try:
            number = offset
            while time.monotonic() < stop_at:
                sent = time.monotonic()
                writer.write(requests[number % len(requests)])
                await _read_answer(reader)
                timings.append((time.monotonic() - sent) * 1000)
                number += clients
        finally:
            writer.close()

    started = time.monotonic()
    await asyncio.gather(*(client(offset) for offset in range(clients)))
    return Hammered(timings, len(timings) / (time.monotonic() - started))


async def _read_answer(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(HEADER_END)
    status_line, *header_lines = head.split(b"\r\n")
    if status_line.split(b" ", 2)[1:2] != [OK_STATUS]:
        raise LoadError(f"answer {status_line.decode(errors='replace')!r}")
    length = next((int(line[len(CONTENT_LENGTH):]) for line in header_lines
                   if line.lower().startswith(CONTENT_LENGTH)), None)
    if length is None:
        raise LoadError("an answer without Content-Length")
    return await reader.readexactly(length)
