"""A small threaded HTTP server for a static site directory, with the faults real sites have.

Used to serve the bundled demo legal site on loopback (so `scrapy crawl legal_docs` works
offline), as the fixture server of the crawl tests, and by the crawl benchmark. Behaviour:

* ``{{BASE}}`` in .txt/.xml files (robots.txt, sitemaps) becomes the server's base URL;
* paths listed in ``fail_once`` answer 500 the first time, then normally;
* paths listed in ``throttle_once`` answer 429 with ``Retry-After: N`` the first time;
* ``*.gbk.html`` files are sent with ``charset=GBK`` in the Content-Type header, other HTML without
  a charset (so pages that declare it in ``<meta>`` must be decoded from that);
* every request is logged as (method, path?query, status, time) so tests can assert what was fetched.

Run it by hand with ``python -m crawlers.demo_server [--port N] [DIR]``.
"""

from __future__ import annotations

import argparse
import mimetypes
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

DEMO_SITE = Path(__file__).parent / "demo_site"
DEMO_FAIL_ONCE = frozenset({"/cases/flaky.html"})
DEMO_THROTTLE_ONCE = {"/cases/busy.html": 1}


class SiteServer:
    """Serve ``directory`` on ``host:port`` (port 0 = any free port) from a daemon thread."""

    def __init__(
        self,
        directory: Path = DEMO_SITE,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        fail_once: frozenset[str] | set[str] = DEMO_FAIL_ONCE,
        throttle_once: dict[str, int] | None = None,
        latency_s: float = 0.0,
    ) -> None:
        self.directory = Path(directory).resolve()
        self.fail_once = set(fail_once)
        self.throttle_once = dict(DEMO_THROTTLE_ONCE if throttle_once is None else throttle_once)
        self.latency_s = latency_s
        self.log: list[tuple[str, str, int, float]] = []  # method, path?query, status, time.monotonic()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer((host, port), self._handler())
        self._httpd.daemon_threads = True
        self.host, self.port = self._httpd.server_address[:2]
        self.base_url = f"http://{self.host}:{self.port}"
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> SiteServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="site-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> SiteServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- introspection ----------------------------------------------------------------------
    def paths(self, status: int | None = None) -> Counter[str]:
        """How many times each path was requested (optionally only answers with ``status``)."""
        with self._lock:
            return Counter(p for _, p, s, _ in self.log if status is None or s == status)

    def times(self, path: str) -> list[float]:
        """Monotonic times at which ``path`` was answered."""
        with self._lock:
            return [t for _, p, _, t in self.log if p == path]

    def _record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.log.append((method, path, status, time.monotonic()))

    # -- request handling -------------------------------------------------------------------
    def _respond(self, path: str) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            if path in self.fail_once:
                self.fail_once.discard(path)
                return 500, {"Content-Type": "text/plain"}, b"temporary failure"
            if path in self.throttle_once:
                wait = self.throttle_once.pop(path)
                return 429, {"Content-Type": "text/plain", "Retry-After": str(wait)}, b"slow down"
        rel = path.lstrip("/") or "index.html"
        if rel.endswith("/"):
            rel += "index.html"
        target = (self.directory / rel).resolve()
        if not target.is_relative_to(self.directory) or not target.is_file():
            return 404, {"Content-Type": "text/html"}, b"<html><body><h1>404 Not Found</h1></body></html>"
        body = target.read_bytes()
        if target.suffix in (".txt", ".xml"):
            body = body.replace(b"{{BASE}}", self.base_url.encode())
        if target.name.endswith(".gbk.html"):
            ctype = "text/html; charset=GBK"
        elif target.suffix == ".html":
            ctype = "text/html"
        else:
            ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
            if ctype.startswith("text/") or ctype.endswith("xml"):
                ctype += "; charset=utf-8"
        return 200, {"Content-Type": ctype}, body

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                path = unquote(parts.path)
                if server.latency_s:
                    time.sleep(server.latency_s)
                status, headers, body = server._respond(path)
                server._record("GET", path + (f"?{parts.query}" if parts.query else ""), status)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # quiet: the log list is the record
                return

        return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve a site directory (default: the demo legal site).")
    parser.add_argument("directory", nargs="?", type=Path, default=DEMO_SITE)
    parser.add_argument("--port", type=int, default=8750, help="0 = any free port (printed)")
    parser.add_argument("--no-faults", action="store_true", help="no 500-once / 429-once pages")
    args = parser.parse_args()
    faults = {"fail_once": frozenset(), "throttle_once": {}} if args.no_faults else {}
    server = SiteServer(args.directory, port=args.port, **faults)
    print(f"serving {server.directory} at {server.base_url}/ (Ctrl-C to stop)", flush=True)
    try:
        server._httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
