"""A loopback stand-in for the Hub's upload API: records which files each commit sends to which repo.

Answers the routes `HfApi.whoami` / `create_repo` / `create_commit` use (whoami, create, preupload,
validate-yaml, commit) and 404 for anything else, so an unexpected call fails the test.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeHub:
    def __init__(self, token: str = "hf_fake") -> None:
        self.token = token  # the one token whoami accepts
        self.repos: dict[str, dict] = {}  # repo id -> {"private": bool, "type": "model" | "dataset"}
        self.commits: list[dict] = []  # {"repo", "type", "message", "files": {path: bytes}}
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _reply(self, status: int, payload: object, content_type: str = "application/json") -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path == "/api/repos/create":
                    request = json.loads(body)
                    owner = request.get("organization")
                    repo = f"{owner}/{request['name']}" if owner else request["name"]
                    private = bool(request.get("private")) or request.get("visibility") == "private"  # hub 1.x / 2.x
                    hub.repos[repo] = {"private": private, "type": request.get("type", "model")}
                    return self._reply(200, {"url": f"{hub.endpoint}/{repo}", "name": repo})
                if self.path == "/api/validate-yaml":
                    return self._reply(200, {})
                match = re.fullmatch(r"/api/(?:models|datasets|spaces)/(.+)/preupload/([^/]+)", self.path)
                if match:
                    files = [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                        for f in json.loads(body)["files"]
                    ]
                    return self._reply(200, {"files": files})
                match = re.fullmatch(r"/api/(models|datasets|spaces)/(.+)/commit/([^/]+)", self.path)
                if match:
                    repo, files, message = match.group(2), {}, None
                    for line in body.decode().splitlines():
                        item = json.loads(line)
                        if item["key"] == "header":
                            message = item["value"]["summary"]
                        elif item["key"] == "file":
                            files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    repo_type = match.group(1)[:-1]  # "model", "dataset" or "space"
                    hub.commits.append({"repo": repo, "type": repo_type, "message": message, "files": files})
                    oid = "1" * 40
                    url = f"{hub.endpoint}/{repo}/commit/{oid}"
                    return self._reply(200, {"commitUrl": url, "commitOid": oid, "pullRequestUrl": None})
                return self._reply(404, {"error": f"fake hub: no route POST {self.path}"})

            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/api/whoami-v2":  # the token check before any push
                    if self.headers.get("Authorization") == f"Bearer {hub.token}":
                        return self._reply(200, {"name": "me", "type": "user"})
                    return self._reply(401, {"error": "Invalid credentials in Authorization header"})
                return self._reply(404, {"error": f"fake hub: no route GET {self.path}"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
