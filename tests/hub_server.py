"""A Hugging Face Hub-compatible HTTP server for tests, standard library only.

The stock ``huggingface_hub`` client and timm talk to it through ``HF_ENDPOINT`` exactly as they talk to
huggingface.co, so the hub tests exercise the real client code paths (repo creation, the preupload / LFS
batch / NDJSON commit upload protocol, branches, ``resolve`` downloads with ETag caching, error codes)
without network access. Repositories live in a temporary folder: every commit has its own sha and a full
file tree, branches point at commits, file contents are stored once by sha256.

What it serves (model repos only; ``org/name`` ids):

- ``GET /api/whoami-v2``, ``POST /api/validate-yaml``
- ``POST /api/repos/create``, ``DELETE /api/repos/delete``
- ``GET /api/models/{repo}``, ``GET /api/models/{repo}/revision/{rev}`` (``sha``, ``siblings``)
- ``GET /api/models/{repo}/refs``, ``/tree/{rev}[/{path}]``, ``/commits/{rev}``
- ``POST /api/models/{repo}/preupload/{rev}``, ``POST /api/models/{repo}/commit/{rev}`` (NDJSON)
- ``POST|DELETE /api/models/{repo}/branch/{branch}``
- ``POST /{repo}.git/info/lfs/objects/batch`` and the ``PUT|GET /lfs-objects/{oid}`` transfer targets
- ``HEAD|GET /{repo}/resolve/{rev}/{path}`` with ``X-Repo-Commit``, ``ETag`` and, for LFS files,
  ``X-Linked-Etag`` / ``X-Linked-Size``; ``Range`` requests for resumed downloads

Errors carry the ``X-Error-Code`` headers (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``) that
the client turns into ``RepositoryNotFoundError`` / ``RevisionNotFoundError`` / ``EntryNotFoundError``.
Writes need ``Authorization: Bearer <token>``; private repos are invisible without it. Xet storage is not
served: clients must run with ``HF_HUB_DISABLE_XET=1`` (see :func:`client_env`).

Run ``python tests/hub_server.py`` to serve by hand; it prints the endpoint and token to use.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_TOKEN = "hf_localtesthubtoken0123456789"
DEFAULT_USER = "hub-tester"
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx", ".h5", ".msgpack", ".pkl", ".npz", ".zip")
LFS_MIN_SIZE = 10 * 1024 * 1024
GITATTRIBUTES = "".join(f"*{suffix} filter=lfs diff=lfs merge=lfs -text\n" for suffix in LFS_SUFFIXES).encode()


class HubHTTPError(Exception):
    """An error answer: status, message and the Hub's ``X-Error-Code``."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


@dataclass(frozen=True)
class Entry:
    """One file in a commit's tree."""

    sha256: str
    size: int
    lfs: bool

    @property
    def pointer(self) -> bytes:
        return f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {self.size}\n".encode()

    def git_oid(self, content: bytes | None) -> str:
        """Git blob id: of the content for regular files, of the LFS pointer file for LFS files."""
        data = self.pointer if self.lfs else content
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    oid: str
    parent: str | None
    tree: dict[str, Entry]
    title: str
    message: str
    date: str


@dataclass
class Repo:
    repo_id: str
    private: bool
    created: str
    refs: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class HubState:
    """Repositories, commits and the content store behind the server (thread-safe)."""

    def __init__(self, root: Path, token: str, user: str):
        self.blobs = root / "blobs"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.token, self.user = token, user
        self.repos: dict[str, Repo] = {}
        self.requests = 0  # requests served, so tests can show that offline loads make none
        self.lock = threading.RLock()
        self._sequence = itertools.count()

    # content store ---------------------------------------------------------------------------------------------
    def put_blob(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        path = self.blobs / sha
        if not path.exists():
            tmp = path.with_suffix(f".{threading.get_ident()}.tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        return sha

    def has_blob(self, sha: str, size: int | None = None) -> bool:
        path = self.blobs / sha
        return path.is_file() and (size is None or path.stat().st_size == size)

    def read_blob(self, sha: str) -> bytes:
        return (self.blobs / sha).read_bytes()

    # repos and revisions --------------------------------------------------------------------------------------
    def repo(self, repo_id: str, authorized: bool) -> Repo:
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and not authorized):
            raise HubHTTPError(404, f"Repository not found: {repo_id}", "RepoNotFound")
        return repo

    def resolve(self, repo: Repo, revision: str) -> Commit:
        """A branch name or a full commit sha -> commit."""
        oid = repo.refs.get(revision, revision)
        commit = repo.commits.get(oid)
        if commit is None:
            raise HubHTTPError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    def create_repo(self, repo_id: str, private: bool) -> Repo:
        with self.lock:
            if repo_id in self.repos:
                raise HubHTTPError(409, "You already created this model repo")
            repo = Repo(repo_id=repo_id, private=private, created=_now())
            self.repos[repo_id] = repo
            entry = Entry(self.put_blob(GITATTRIBUTES), len(GITATTRIBUTES), lfs=False)
            self.commit(repo, "main", None, {".gitattributes": entry}, "initial commit", "")
            return repo

    def commit(
        self, repo: Repo, branch: str, parent: str | None, tree: dict[str, Entry], title: str, message: str
    ) -> Commit:
        with self.lock:
            seed = json.dumps([parent, sorted((p, e.sha256) for p, e in tree.items()), title, next(self._sequence)])
            oid = hashlib.sha1(seed.encode()).hexdigest()
            commit = Commit(oid, parent, dict(tree), title, message, _now())
            repo.commits[oid] = commit
            repo.refs[branch] = oid
            return commit

    def all_files(self) -> Iterator[tuple[str, str, str, bytes]]:
        """(repo_id, commit sha, path, content) of every file of every commit of every repo."""
        with self.lock:
            snapshot = [(r.repo_id, c) for r in self.repos.values() for c in r.commits.values()]
        for repo_id, commit in snapshot:
            for path, entry in sorted(commit.tree.items()):
                yield repo_id, commit.oid, path, self.read_blob(entry.sha256)


class HubRequestHandler(BaseHTTPRequestHandler):
    """Routes one request to the matching Hub endpoint."""

    protocol_version = "HTTP/1.1"
    server: "_Server"

    # plumbing -------------------------------------------------------------------------------------------------
    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        """Keep test output quiet."""

    @property
    def state(self) -> HubState:
        return self.server.state

    @property
    def base_url(self) -> str:
        return f"http://{self.headers.get('Host') or '%s:%d' % self.server.server_address[:2]}"

    @property
    def authorized(self) -> bool:
        return self.headers.get("Authorization", "") == f"Bearer {self.state.token}"

    def require_token(self) -> None:
        if not self.authorized:
            raise HubHTTPError(401, "Invalid credentials in Authorization header")

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def read_json(self):
        try:
            return json.loads(self.read_body() or b"{}")
        except json.JSONDecodeError as err:
            raise HubHTTPError(400, f"Invalid JSON body: {err}") from err

    def send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        headers = {"Content-Type": "application/json", **(headers or {})}
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, payload, status: int = 200) -> None:
        self.send(status, json.dumps(payload).encode())

    def dispatch(self) -> None:
        with self.state.lock:
            self.state.requests += 1
        url = urlsplit(self.path)
        self.query = parse_qs(url.query)
        try:
            for pattern, method, handler in ROUTES:
                match = pattern.fullmatch(url.path)
                if match and method == self.command:
                    handler(self, *(unquote(g) for g in match.groups() if g is not None))
                    return
            raise HubHTTPError(404, f"No route for {self.command} {url.path}")
        except HubHTTPError as err:
            self.send_error_json(err)
        except (KeyError, TypeError, ValueError) as err:
            self.send_error_json(HubHTTPError(400, f"Malformed request: {err!r}"))

    def send_error_json(self, err: HubHTTPError) -> None:
        # the request body may be unread: close the connection instead of reusing it
        self.close_connection = True
        headers = {"X-Error-Message": err.message, "Connection": "close", **err.headers}
        if err.code:
            headers["X-Error-Code"] = err.code
        self.send(err.status, json.dumps({"error": err.message}).encode(), headers)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = dispatch

    # api ---------------------------------------------------------------------------------------------------------
    def whoami(self) -> None:
        if not self.authorized:
            raise HubHTTPError(401, "Invalid credentials in Authorization header")
        self.send_json({
            "type": "user", "name": self.state.user, "fullname": "Hub Tester", "orgs": [],
            "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}},
        })

    def validate_yaml(self) -> None:
        self.read_body()
        self.send_json({"errors": [], "warnings": []})

    def create_repo(self) -> None:
        self.require_token()
        payload = self.read_json()
        if payload.get("type", "model") != "model":
            raise HubHTTPError(400, "This test server only hosts model repositories")
        name, organization = payload.get("name", ""), payload.get("organization") or self.state.user
        if not re.fullmatch(r"[\w.-]+", name) or not re.fullmatch(r"[\w.-]+", organization):
            raise HubHTTPError(400, f"Invalid repo name: {organization}/{name}")
        private = bool(payload.get("private")) or payload.get("visibility") == "private"
        repo_id = f"{organization}/{name}"
        if repo_id in self.state.repos:  # the Hub's 409 names the existing repo, and the client reads it
            self.send_json({"error": "You already created this model repo", "url": f"{self.base_url}/{repo_id}"}, 409)
            return
        self.state.create_repo(repo_id, private)
        self.send_json({"url": f"{self.base_url}/{repo_id}", "name": repo_id, "id": repo_id})

    def delete_repo(self) -> None:
        self.require_token()
        payload = self.read_json()
        repo_id = f"{payload.get('organization') or self.state.user}/{payload.get('name')}"
        with self.state.lock:
            self.state.repo(repo_id, authorized=True)
            del self.state.repos[repo_id]
        self.send_json({})

    def repo_info(self, repo_id: str, revision: str = "main") -> None:
        repo = self.state.repo(repo_id, self.authorized)
        commit = self.state.resolve(repo, revision)
        with_blobs = "blobs" in self.query
        siblings = []
        for path, entry in sorted(commit.tree.items()):
            sibling: dict = {"rfilename": path}
            if with_blobs:
                content = None if entry.lfs else self.state.read_blob(entry.sha256)
                sibling.update(size=entry.size, blobId=entry.git_oid(content))
                if entry.lfs:
                    sibling["lfs"] = {"sha256": entry.sha256, "size": entry.size, "pointerSize": len(entry.pointer)}
            siblings.append(sibling)
        self.send_json({
            "_id": repo_id, "id": repo_id, "modelId": repo_id, "author": repo_id.split("/")[0], "sha": commit.oid,
            "lastModified": commit.date, "createdAt": repo.created, "private": repo.private, "gated": False,
            "disabled": False, "downloads": 0, "likes": 0, "tags": [], "siblings": siblings,
        })

    def refs(self, repo_id: str) -> None:
        repo = self.state.repo(repo_id, self.authorized)
        branches = [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": o} for n, o in sorted(repo.refs.items())]
        self.send_json({"branches": branches, "converts": [], "tags": []})

    def tree(self, repo_id: str, revision: str, prefix: str = "") -> None:
        repo = self.state.repo(repo_id, self.authorized)
        commit = self.state.resolve(repo, revision)
        prefix = prefix.strip("/")
        recursive = self.query.get("recursive", ["false"])[0].lower() in ("1", "true")
        entries, folders = [], set()
        for path, entry in sorted(commit.tree.items()):
            if prefix and not path.startswith(prefix + "/"):
                continue
            rest = path[len(prefix) + 1:] if prefix else path
            if "/" in rest and not recursive:
                folders.add(f"{prefix}/{rest.split('/')[0]}".strip("/"))
                continue
            content = None if entry.lfs else self.state.read_blob(entry.sha256)
            item = {"type": "file", "oid": entry.git_oid(content), "size": entry.size, "path": path}
            if entry.lfs:
                item["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": len(entry.pointer)}
            entries.append(item)
        if prefix and not entries and not folders:
            raise HubHTTPError(404, f"Entry not found: {prefix}", "EntryNotFound")
        entries += [{"type": "directory", "oid": "0" * 40, "size": 0, "path": f} for f in sorted(folders)]
        self.send_json(entries)

    def commits(self, repo_id: str, revision: str) -> None:
        repo = self.state.repo(repo_id, self.authorized)
        commit, history = self.state.resolve(repo, revision), []
        while commit is not None:
            history.append({"id": commit.oid, "title": commit.title, "message": commit.message,
                            "authors": [{"user": self.state.user}], "date": commit.date})
            commit = repo.commits.get(commit.parent) if commit.parent else None
        self.send_json(history)

    def create_branch(self, repo_id: str, branch: str) -> None:
        self.require_token()
        payload = self.read_json()
        with self.state.lock:
            repo = self.state.repo(repo_id, authorized=True)
            if branch in repo.refs:
                raise HubHTTPError(409, f"Reference already exists: refs/heads/{branch}")
            repo.refs[branch] = self.state.resolve(repo, payload.get("startingPoint") or "main").oid
        self.send_json({})

    def delete_branch(self, repo_id: str, branch: str) -> None:
        self.require_token()
        with self.state.lock:
            repo = self.state.repo(repo_id, authorized=True)
            if branch == "main" or branch not in repo.refs:
                raise HubHTTPError(400 if branch == "main" else 404, f"Cannot delete branch {branch}")
            del repo.refs[branch]
        self.send_json({})

    def preupload(self, repo_id: str, revision: str) -> None:
        self.require_token()
        repo = self.state.repo(repo_id, authorized=True)
        commit = self.state.resolve(repo, revision)
        files = []
        for item in self.read_json().get("files", []):
            path, size = item["path"], int(item["size"])
            lfs = path.endswith(LFS_SUFFIXES) or size >= LFS_MIN_SIZE
            current, oid = commit.tree.get(path), None
            if current is not None and current.lfs == lfs:
                oid = current.sha256 if lfs else current.git_oid(self.state.read_blob(current.sha256))
            files.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        self.send_json({"files": files, "commitOid": commit.oid})

    def lfs_batch(self, repo_id: str) -> None:
        payload = self.read_json()
        operation = payload.get("operation")
        if operation == "upload":
            self.require_token()
        self.state.repo(repo_id, self.authorized)
        objects = []
        for obj in payload.get("objects", []):
            oid, size = obj["oid"], int(obj["size"])
            answer: dict = {"oid": oid, "size": size, "authenticated": True}
            href = f"{self.base_url}/lfs-objects/{oid}"
            if operation == "upload" and not self.state.has_blob(oid, size):
                answer["actions"] = {"upload": {"href": href, "header": {}}}
            elif operation == "download":
                if self.state.has_blob(oid, size):
                    answer["actions"] = {"download": {"href": href, "header": {}}}
                else:
                    answer["error"] = {"code": 404, "message": f"Object {oid} does not exist"}
            objects.append(answer)
        body = json.dumps({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}).encode()
        self.send(200, body, {"Content-Type": "application/vnd.git-lfs+json"})

    def lfs_put(self, oid: str) -> None:
        data = self.read_body()
        if hashlib.sha256(data).hexdigest() != oid:
            raise HubHTTPError(400, f"Uploaded content does not match sha256 {oid}")
        self.state.put_blob(data)
        self.send(200, b"", {"ETag": f'"{oid}"'})

    def lfs_get(self, oid: str) -> None:
        if not self.state.has_blob(oid):
            raise HubHTTPError(404, f"Object {oid} does not exist")
        self.send(200, self.state.read_blob(oid), {"Content-Type": "application/octet-stream"})

    def commit(self, repo_id: str, revision: str) -> None:
        self.require_token()
        if "create_pr" in self.query:
            raise HubHTTPError(400, "This test server does not support pull requests")
        lines = [json.loads(line) for line in self.read_body().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubHTTPError(400, "The commit payload must start with a header line")
        header = lines[0]["value"]
        with self.state.lock:
            repo = self.state.repo(repo_id, authorized=True)
            if revision not in repo.refs:
                raise HubHTTPError(404, f"Invalid rev id: {revision} is not a branch", "RevisionNotFound")
            head = self.state.resolve(repo, revision)
            parent = header.get("parentCommit")
            if parent is not None and parent != head.oid:
                raise HubHTTPError(412, f"A commit has happened since {parent}: the branch head is {head.oid}")
            tree = dict(head.tree)
            for line in lines[1:]:
                key, value = line["key"], line["value"]
                path = value["path"]
                if key == "file":
                    data = base64.b64decode(value["content"]) if value.get("encoding") == "base64" else \
                        value["content"].encode()
                    tree[path] = Entry(self.state.put_blob(data), len(data), lfs=False)
                elif key == "lfsFile":
                    size = value.get("size")
                    if not self.state.has_blob(value["oid"], size):
                        raise HubHTTPError(422, f"LFS object {value['oid']} for {path} was not uploaded")
                    size = size if size is not None else (self.state.blobs / value["oid"]).stat().st_size
                    tree[path] = Entry(value["oid"], int(size), lfs=True)
                elif key == "deletedFile":
                    if tree.pop(path, None) is None:
                        raise HubHTTPError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                elif key == "deletedFolder":
                    for name in [p for p in tree if p.startswith(path.rstrip("/") + "/")]:
                        del tree[name]
                else:
                    raise HubHTTPError(400, f"Unknown commit operation {key!r}")
            commit = self.state.commit(repo, revision, head.oid, tree, header.get("summary", ""),
                                       header.get("description", ""))
        self.send_json({"commitUrl": f"{self.base_url}/{repo_id}/commit/{commit.oid}", "commitOid": commit.oid,
                        "pullRequestUrl": None, "success": True})

    def resolve_file(self, repo_id: str, revision: str, path: str) -> None:
        repo = self.state.repo(repo_id, self.authorized)
        commit = self.state.resolve(repo, revision)
        entry = commit.tree.get(path)
        if entry is None:
            raise HubHTTPError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": commit.oid})
        data = self.state.read_blob(entry.sha256)
        headers = {"Content-Type": "application/octet-stream", "X-Repo-Commit": commit.oid,
                   "ETag": f'"{entry.git_oid(data)}"', "Accept-Ranges": "bytes"}
        if entry.lfs:
            headers.update({"X-Linked-Etag": f'"{entry.sha256}"', "X-Linked-Size": str(entry.size)})
        status = 200
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if match and self.command == "GET":
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else len(data) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start:end + 1], 206
        self.send(status, data, headers)


_REPO = r"/([\w.-]+/[\w.-]+)"
_API = r"/api/models" + _REPO
ROUTES = [(re.compile(pattern), method, handler) for pattern, method, handler in [
    (r"/api/whoami-v2", "GET", HubRequestHandler.whoami),
    (r"/api/validate-yaml", "POST", HubRequestHandler.validate_yaml),
    (r"/api/repos/create", "POST", HubRequestHandler.create_repo),
    (r"/api/repos/delete", "DELETE", HubRequestHandler.delete_repo),
    (_API, "GET", HubRequestHandler.repo_info),
    (_API + r"/revision/([^/]+)", "GET", HubRequestHandler.repo_info),
    (_API + r"/refs", "GET", HubRequestHandler.refs),
    (_API + r"/tree/([^/]+)(?:/(.*))?", "GET", HubRequestHandler.tree),
    (_API + r"/commits/([^/]+)", "GET", HubRequestHandler.commits),
    (_API + r"/branch/([^/]+)", "POST", HubRequestHandler.create_branch),
    (_API + r"/branch/([^/]+)", "DELETE", HubRequestHandler.delete_branch),
    (_API + r"/preupload/([^/]+)", "POST", HubRequestHandler.preupload),
    (_API + r"/commit/([^/]+)", "POST", HubRequestHandler.commit),
    (_REPO + r"\.git/info/lfs/objects/batch", "POST", HubRequestHandler.lfs_batch),
    (r"/lfs-objects/([0-9a-f]{64})", "PUT", HubRequestHandler.lfs_put),
    (r"/lfs-objects/([0-9a-f]{64})", "GET", HubRequestHandler.lfs_get),
    (_REPO + r"/resolve/([^/]+)/(.+)", "HEAD", HubRequestHandler.resolve_file),
    (_REPO + r"/resolve/([^/]+)/(.+)", "GET", HubRequestHandler.resolve_file),
]]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: HubState


class HubServer:
    """A running local Hub: ``with HubServer() as hub: ...`` then point the client at ``hub.url``."""

    def __init__(self, root: Path | None = None, token: str = DEFAULT_TOKEN, user: str = DEFAULT_USER):
        self._tmp = None if root is not None else tempfile.mkdtemp(prefix="hub-server-")
        self.root = Path(root if root is not None else self._tmp)
        self.token, self.user = token, user
        self._httpd = _Server(("127.0.0.1", 0), HubRequestHandler)
        self._httpd.state = HubState(self.root, token, user)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-server", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def state(self) -> HubState:
        return self._httpd.state

    def start(self) -> "HubServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def uploaded_files(self) -> Iterator[tuple[str, str, str, bytes]]:
        """(repo_id, commit sha, path, content) of every file ever committed, for leak scans."""
        return self.state.all_files()

    def client_env(self, hf_home: Path, *, offline: bool = False) -> dict[str, str]:
        """Environment for a client process that talks to this server and caches under ``hf_home``."""
        return client_env(self.url, self.token, hf_home, offline=offline)


def client_env(endpoint: str, token: str | None, hf_home: Path, *, offline: bool = False) -> dict[str, str]:
    """Variables that point huggingface_hub (and timm through it) at ``endpoint`` with a private cache."""
    env = {
        "HF_ENDPOINT": endpoint,
        "HF_HOME": str(hf_home),
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_OFFLINE": "1" if offline else "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": "0",
    }
    if token is not None:
        env["HF_TOKEN"] = token
    return env


def point_client_at(monkeypatch, endpoint: str, token: str | None, hf_home: Path, *, offline: bool = False) -> None:
    """Point an already-imported huggingface_hub (and timm, which calls it) at ``endpoint``, in-process.

    The client reads ``HF_ENDPOINT``, ``HF_HOME``, ``HF_HUB_OFFLINE`` and ``HF_HUB_DISABLE_XET`` once, at
    import, into ``huggingface_hub.constants``; this sets both the variables and those constants through
    ``monkeypatch`` (pytest's fixture, or anything with ``setenv``/``delenv``/``setattr``), so the test's
    changes are undone afterwards and the user's real cache is never touched.
    """
    from huggingface_hub import constants

    for key, value in client_env(endpoint, token, hf_home, offline=offline).items():
        monkeypatch.setenv(key, value)
    if token is None:
        monkeypatch.delenv("HF_TOKEN", raising=False)
    hf_home = Path(hf_home)
    values = {
        "ENDPOINT": endpoint,
        "HUGGINGFACE_CO_URL_TEMPLATE": endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_HUB_OFFLINE": offline,
        "HF_HUB_DISABLE_XET": True,
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": str(hf_home / "hub"),
        "HUGGINGFACE_HUB_CACHE": str(hf_home / "hub"),
        "HF_ASSETS_CACHE": str(hf_home / "assets"),
        "HF_TOKEN_PATH": str(hf_home / "token"),
        "HF_STORED_TOKENS_PATH": str(hf_home / "stored_tokens"),
        "HF_XET_CACHE": str(hf_home / "xet"),
    }
    for name, value in values.items():
        monkeypatch.setattr(constants, name, value)


if __name__ == "__main__":
    with HubServer() as hub:
        print(f"HF_ENDPOINT={hub.url} HF_TOKEN={hub.token} HF_HUB_DISABLE_XET=1  (Ctrl-C to stop)", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
