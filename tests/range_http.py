"""A loopback HTTP server with ``Range`` support, serving one local folder (tests and benchmarks/bench_remote.py).

The standard library's ``SimpleHTTPRequestHandler`` ignores ``Range`` and always sends the whole file, which
fsspec's HTTP reader refuses; this handler answers ``bytes=a-b`` with ``206 Partial Content``.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import re
import socket
import threading
from typing import Iterator

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """GET/HEAD of files under ``directory``, honouring one ``Range: bytes=a-b`` per request."""

    protocol_version = "HTTP/1.1"  # keep-alive: one connection for a whole shard, as a real store allows

    def setup(self) -> None:
        super().setup()
        # a large send buffer lets one sendfile call queue megabytes instead of waking per ~200 KB
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)

    def log_message(self, *args) -> None:  # quiet: tests and the benchmark print their own lines
        pass

    def send_head(self):
        path = self.translate_path(self.path)
        if not os.path.isfile(path):
            self.send_error(404, "not found")
            return None
        size = os.path.getsize(path)
        start, end = 0, size - 1
        match = _RANGE.match(self.headers.get("Range", "").strip())
        if match and (match.group(1) or match.group(2)):
            if match.group(1):
                start = int(match.group(1))
                end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            else:  # a suffix range: the last N bytes
                start = max(size - int(match.group(2)), 0)
            if start >= size or start > end:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        file = open(path, "rb")
        file.seek(start)
        self._left = end - start + 1
        return file

    def copyfile(self, source, outputfile) -> None:
        # sendfile: the kernel copies page cache to socket, so the server costs little CPU (a remote store's
        # work is not on the reader's machine; here it shares it)
        outputfile.flush()
        try:
            self.connection.sendfile(source, source.tell(), self._left)
        except (ConnectionResetError, BrokenPipeError):
            pass  # the client stopped reading (closed the file early): nothing to report


@contextlib.contextmanager
def serve(directory: str) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1 (a free port) in a thread; yields the base URL ``http://127.0.0.1:PORT``."""
    handler = functools.partial(RangeHandler, directory=os.fspath(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


__all__ = ["serve", "RangeHandler"]


if __name__ == "__main__":  # python -m tests.range_http DIR: serve DIR in this process, print the URL, run until killed
    import sys
    import time

    with serve(sys.argv[1]) as url:
        print(url, flush=True)
        while True:
            time.sleep(3600)
