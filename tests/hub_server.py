"""A small Hugging Face Hub-compatible HTTP server on 127.0.0.1, for tests (never the internet).

It answers what the real ``huggingface_hub`` 2.x client calls for downloads and plain uploads:

- ``HEAD``/``GET /{repo}/resolve/{revision}/{path}`` with ``X-Repo-Commit``, a quoted ``ETag`` (sha256
  for LFS-like files, the git blob sha1 otherwise), ``Content-Length`` and ``Range`` support; 404s carry
  ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``);
- ``GET /api/models/{repo}[/revision/{revision}]`` and ``GET /api/models/{repo}/tree/{revision}``
  (what ``snapshot_download`` lists);
- ``POST /api/repos/create``, ``/api/validate-yaml``, ``/api/models/{repo}/branch/{branch}``,
  ``/api/models/{repo}/preupload/{revision}`` (every file "regular": no LFS/Xet storage here) and
  ``/api/models/{repo}/commit/{revision}`` (ndjson, base64 files, ``create_pr``);
- ``GET /files/{name}``: plain static files (for URL sources).

Faults for tests: :meth:`FakeHub.cut_next` closes the connection in the middle of the next body,
``down`` answers every request with 500, ``chunk_delay`` slows bodies down. Every request is logged.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeHub"]

_CHUNK = 64 * 1024


def _is_lfs(path: str, data: bytes) -> bool:
    return path.endswith(".safetensors") or len(data) > 10 * 1024 * 1024


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _etag(path: str, data: bytes) -> str:
    return hashlib.sha256(data).hexdigest() if _is_lfs(path, data) else _git_blob_sha1(data)


@dataclass
class _Repo:
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    prs: int = 0


class FakeHub:
    """The server and its state; use as a context manager or call :meth:`start` / :meth:`stop`."""

    def __init__(self) -> None:
        self.repos: dict[str, _Repo] = {}
        self.static: dict[str, bytes] = {}
        self.log: list[tuple[str, str]] = []
        self.down = False
        self.chunk_delay = 0.0
        self._cuts: dict[str, int] = {}
        self._down_after_cut = False
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.endpoint = ""

    # --- state ---------------------------------------------------------------------------------------
    def commit(self, repo_id: str, files: dict[str, bytes], branch: str = "main", replace: bool = False) -> str:
        """Add a commit on ``branch`` (files are added to the parent's unless ``replace``); return its sha."""
        with self._lock:
            repo = self.repos.setdefault(repo_id, _Repo())
            parent = repo.refs.get(branch)
            tree = {} if replace or parent is None else dict(repo.commits[parent])
            tree.update(files)
            seed = f"{repo_id}|{branch}|{parent}|{len(repo.commits)}|" + "|".join(
                f"{p}:{hashlib.sha256(d).hexdigest()}" for p, d in sorted(tree.items()))
            sha = hashlib.sha1(seed.encode()).hexdigest()
            repo.commits[sha] = tree
            repo.refs[branch] = sha
            return sha

    def cut_next(self, path_suffix: str, after: int, then_down: bool = False) -> None:
        """The next GET whose path ends with ``path_suffix`` sends ``after`` bytes, then the connection dies."""
        with self._lock:
            self._cuts[path_suffix] = after
            self._down_after_cut = then_down

    def requests(self, method: str | None = None, contains: str = "") -> list[tuple[str, str]]:
        """Logged requests, filtered by method and a substring of the path."""
        with self._lock:
            return [(m, p) for m, p in self.log if (method is None or m == method) and contains in p]

    def clear_log(self) -> None:
        with self._lock:
            self.log.clear()

    # --- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            state = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: FakeHub

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # --- helpers -------------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), headers)

    def _error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        self._json(status, {"error": message}, {"X-Error-Code": code, **(headers or {})})

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _repo_and_commit(self, repo_id: str, revision: str) -> tuple[_Repo, str] | None:
        repo = self.state.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
            return None
        revision = urllib.parse.unquote(revision)
        commit = revision if revision in repo.commits else repo.refs.get(revision)
        if commit is None:
            self._error(404, "RevisionNotFound", f"Revision {revision} not found")
            return None
        return repo, commit

    def _begin(self) -> list[str] | None:
        url = urllib.parse.urlsplit(self.path)
        with self.state._lock:
            self.state.log.append((self.command, url.path))
        if self.state.down:
            self._body() if self.command == "POST" else None
            self._error(500, "ServerError", "the fake Hub is down")
            return None
        return [urllib.parse.unquote(p) for p in url.path.strip("/").split("/")]

    # --- files ---------------------------------------------------------------------------------------
    def _serve_bytes(self, data: bytes, headers: dict[str, str], cut_key: str) -> None:
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and self.command == "GET":
            start = int(rng[6:].split("-")[0] or 0)
        body = data[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/octet-stream")
        for k, v in headers.items():
            self.send_header(k, v)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "HEAD":
            return
        with self.state._lock:
            cut = next((k for k in self.state._cuts if cut_key.endswith(k)), None)
            limit = self.state._cuts.pop(cut) if cut is not None else None
            if limit is not None and self.state._down_after_cut:
                self.state.down = True
        try:
            self._stream(body, limit)
        except (BrokenPipeError, ConnectionResetError):  # the client went away (a killed process)
            self.close_connection = True

    def _stream(self, body: bytes, limit: int | None) -> None:
        sent = 0
        while sent < len(body):
            n = _CHUNK if limit is None else min(_CHUNK, limit - sent)
            if n <= 0:  # the cut: the peer sees the connection close in the middle of the body
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            self.wfile.write(body[sent:sent + n])
            sent += n
            if self.state.chunk_delay:
                self.wfile.flush()
                time.sleep(self.state.chunk_delay)

    def _resolve(self, parts: list[str]) -> None:
        repo_id, revision, path = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
        found = self._repo_and_commit(repo_id, revision)
        if found is None:
            return
        repo, commit = found
        data = repo.commits[commit].get(path)
        if data is None:
            self._error(404, "EntryNotFound", f"{path} not found", {"X-Repo-Commit": commit})
            return
        headers = {"X-Repo-Commit": commit, "ETag": f'"{_etag(path, data)}"', "Accept-Ranges": "bytes"}
        self._serve_bytes(data, headers, f"{repo_id}/{path}")

    def _tree(self, repo: _Repo, commit: str) -> list[dict[str, Any]]:
        out = []
        for path, data in sorted(repo.commits[commit].items()):
            entry: dict[str, Any] = {"type": "file", "oid": _git_blob_sha1(data), "size": len(data), "path": path}
            if _is_lfs(path, data):
                entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            out.append(entry)
        return out

    # --- verbs ---------------------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        parts = self._begin()
        if parts is None:
            return
        if parts[0] == "files" and len(parts) == 2:
            data = self.state.static.get(parts[1])
            if data is None:
                self._send(404, b"not found", content_type="text/plain")
            else:
                self._serve_bytes(data, {}, parts[1])
        elif len(parts) >= 5 and parts[2] == "resolve":
            self._resolve(parts)
        elif parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo_id = "/".join(parts[2:4])
            if len(parts) == 4 or parts[4] == "revision":
                found = self._repo_and_commit(repo_id, parts[5] if len(parts) > 5 else "main")
                if found:
                    repo, commit = found
                    self._json(200, {"id": repo_id, "sha": commit, "private": False,
                                     "siblings": [{"rfilename": p} for p in sorted(repo.commits[commit])]})
            elif parts[4] == "tree":
                found = self._repo_and_commit(repo_id, parts[5])
                if found:
                    self._json(200, self._tree(*found))
            else:
                self._error(404, "NotFound", self.path)
        else:
            self._error(404, "NotFound", self.path)

    def do_POST(self) -> None:
        parts = self._begin()
        if parts is None:
            return
        body = self._body()
        hub = self.state
        if parts == ["api", "repos", "create"]:
            payload = json.loads(body)
            repo_id = f"{payload['organization']}/{payload['name']}"
            if repo_id in hub.repos:
                self._json(409, {"error": "You already created this model repo", "url": f"{hub.endpoint}/{repo_id}"})
                return
            hub.commit(repo_id, {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"})
            self._json(200, {"url": f"{hub.endpoint}/{repo_id}"})
        elif parts == ["api", "validate-yaml"]:
            self._json(200, {"errors": [], "warnings": []})
        elif parts[:2] == ["api", "models"] and len(parts) >= 6:
            repo_id, action, revision = "/".join(parts[2:4]), parts[4], "/".join(parts[5:])
            found = self._repo_and_commit(repo_id, "main")
            if found is None:
                return
            repo = found[0]
            if action == "branch":
                if revision in repo.refs:
                    self._error(409, "Conflict", "branch exists")
                else:
                    repo.refs[revision] = repo.refs["main"]
                    self._json(200, {})
            elif action == "preupload":
                files = json.loads(body)["files"]
                self._json(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                                            "oid": None} for f in files]})
            elif action == "commit":
                self._commit(repo_id, repo, revision, body)
            else:
                self._error(404, "NotFound", self.path)
        else:
            self._error(404, "NotFound", self.path)

    def _commit(self, repo_id: str, repo: _Repo, revision: str, body: bytes) -> None:
        hub = self.state
        create_pr = "create_pr=1" in urllib.parse.urlsplit(self.path).query
        if revision not in repo.refs:
            self._error(404, "RevisionNotFound", f"Revision {revision} not found")
            return
        files: dict[str, bytes] = {}
        for line in body.splitlines():
            item = json.loads(line)
            if item["key"] == "file":
                files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            elif item["key"] != "header":
                self._error(400, "BadRequest", f"the fake Hub does not support {item['key']}")
                return
        branch = revision
        pr_url = None
        if create_pr:
            repo.prs += 1
            branch = f"refs/pr/{repo.prs}"
            repo.refs[branch] = repo.refs[revision]
            pr_url = f"{hub.endpoint}/{repo_id}/discussions/{repo.prs}"
        sha = hub.commit(repo_id, files, branch=branch)
        self._json(200, {"commitUrl": f"{hub.endpoint}/{repo_id}/commit/{sha}", "commitOid": sha,
                         "pullRequestUrl": pr_url})
