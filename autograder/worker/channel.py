"""Messages between two processes over one end of a socket pair: length-prefixed JSON frames,
read and written with deadlines.

Both sides use it: the grading process talks to a worker's keeper, the keeper to the process
that runs one call. The socket pair exists before the worker runs any student code and is
inherited, never opened by a path, so no other process can connect to it. A reader never waits
past its deadline, even for the rest of a half-written frame, and never trusts what it reads:
oversized, truncated or unparsable frames raise ChannelError.

Standard library only: it runs in the worker before anything else is imported.
"""
from __future__ import annotations

import json
import os
import select
import time

MAX_FRAME_BYTES = 256 * 2**20
HEADER_BYTES = 8


class ChannelError(Exception):
    """The other side sent something unreadable, too much, or nothing in time."""


class ChannelClosed(ChannelError):
    """The other side closed the channel (its process ended) at a frame boundary."""


class Channel:
    """One end of a connected socket pair (or a pair of pipe ends: `read_fd`, `write_fd`)."""

    def __init__(self, read_fd: int, write_fd: int | None = None):
        self.read_fd = read_fd
        self.write_fd = read_fd if write_fd is None else write_fd
        for fd in {self.read_fd, self.write_fd}:
            os.set_blocking(fd, False)

    @classmethod
    def of_socket(cls, sock) -> "Channel":
        """A channel on a socket object; the channel owns a duplicate of its descriptor."""
        return cls(os.dup(sock.fileno()))

    def fileno(self) -> int:
        return self.read_fd

    # writing ------------------------------------------------------------------------------
    def send(self, message: dict, timeout: float | None = None) -> None:
        self.send_frame(dumps(message), timeout)

    def send_frame(self, data: bytes, timeout: float | None = None) -> None:
        if len(data) > MAX_FRAME_BYTES:
            raise ChannelError(f"a message of {len(data)} bytes is larger than {MAX_FRAME_BYTES}")
        self._write(len(data).to_bytes(HEADER_BYTES, "big") + data, timeout)

    def _write(self, data: bytes, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        view = memoryview(data)
        while view:
            self._wait(select.POLLOUT, deadline, "sending")
            try:
                written = os.write(self.write_fd, view)
            except BlockingIOError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                raise ChannelClosed("the other side is gone") from None
            except OSError as error:
                raise ChannelError(f"cannot send ({error.strerror})") from None
            view = view[written:]

    # reading ------------------------------------------------------------------------------
    def receive(self, timeout: float | None = None) -> dict:
        """The next message (a dict); ChannelClosed at the end, ChannelError on anything else."""
        return loads(self.receive_frame(timeout))

    def receive_frame(self, timeout: float | None = None) -> bytes:
        deadline = None if timeout is None else time.monotonic() + timeout
        header = self._read(HEADER_BYTES, deadline, at_boundary=True)
        size = int.from_bytes(header, "big")
        if size > MAX_FRAME_BYTES:
            raise ChannelError(f"an answer announced {size} bytes, more than the {MAX_FRAME_BYTES} allowed")
        return self._read(size, deadline, at_boundary=False)

    def _read(self, size: int, deadline: float | None, at_boundary: bool) -> bytes:
        chunks, left = [], size
        while left:
            self._wait(select.POLLIN, deadline, "waiting for an answer")
            try:
                chunk = os.read(self.read_fd, min(left, 1 << 20))
            except BlockingIOError:
                continue
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                if at_boundary and left == size:
                    raise ChannelClosed("the other side closed the channel")
                raise ChannelError("the other side stopped in the middle of a message")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _wait(self, event: int, deadline: float | None, doing: str) -> None:
        fd = self.write_fd if event == select.POLLOUT else self.read_fd
        poller = select.poll()
        poller.register(fd, event | select.POLLHUP | select.POLLERR)
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if poller.poll(None if remaining is None else int(remaining * 1000) + 1):
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise ChannelTimeout(f"no complete message within the time limit ({doing})")

    def readable(self, timeout: float = 0.0) -> bool:
        poller = select.poll()
        poller.register(self.read_fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        return bool(poller.poll(int(timeout * 1000)))

    def close(self) -> None:
        for fd in {self.read_fd, self.write_fd}:
            try:
                os.close(fd)
            except OSError:
                pass


class ChannelTimeout(ChannelError):
    """Nothing (or not all of a message) arrived before the deadline."""


def dumps(message: dict) -> bytes:
    return json.dumps(message, allow_nan=False, separators=(",", ":")).encode()


def loads(data: bytes) -> dict:
    message = loads_value(data)
    if not isinstance(message, dict):
        raise ChannelError("a message that is not a JSON object")
    return message


def loads_value(data: bytes):
    """Any JSON value; ChannelError for what is not JSON, or too deep or large to read."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError, MemoryError) as error:
        raise ChannelError(f"an unreadable message ({type(error).__name__})") from None
