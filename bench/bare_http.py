"""The benchmarks' bare HTTP/1.1 client (used by bench/http_load.py's load generator and by
the upload benchmarks): one keep-alive connection, multipart bodies, 127.0.0.1 only."""

from __future__ import annotations

import asyncio
import uuid

from bench.http_servers import HOST


class Connection:
    """One keep-alive HTTP/1.1 connection, just enough protocol for these benchmarks.

    httpx measured about 2.8 ms of client CPU per request here, which on 2 cores would
    throttle the server under test; this bare client costs a small fraction of that
    (``python -m bench.http_load`` measures it).
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"", content_type: str = "application/json") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n")
        try:
            self.writer.write(head.encode() + body)
            raw = await self.reader.readuntil(b"\r\n\r\n")
            lines = raw.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
            if "content-length" in headers:
                data = await self.reader.readexactly(int(headers["content-length"]))
            elif headers.get("transfer-encoding") == "chunked":
                data = await self._chunked()
            else:  # no framing: the body runs to the end of the connection
                data = await self.reader.read()
                headers["connection"] = "close"
            if headers.get("connection") == "close":
                await self.close()
            return status, data
        except BaseException:
            await self.close()  # never reuse a connection left mid-response
            raise

    async def _chunked(self) -> bytes:
        parts = []
        for _ in range(1 << 20):  # bounded: a response of a million chunks is a bug
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                break
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)
        return b"".join(parts)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None


def multipart(data: bytes, filename: str, fields: dict[str, str] | None = None) -> tuple[bytes, str]:
    """A multipart/form-data body with ``file`` (and optional text fields): (body, content type)."""
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in (fields or {}).items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
                 f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def split_url(base_url: str) -> tuple[str, int]:
    hostport = base_url.split("://", 1)[-1].rstrip("/")
    host, port = hostport.rsplit(":", 1)
    if host not in (HOST, "localhost"):
        raise ValueError(f"benchmarks only talk to {HOST}, not {host}")
    return host, int(port)
