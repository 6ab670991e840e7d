"""The ASGI gate against the shared hostile-target table, in front of real Starlette routes
and a real ``StaticFiles`` mount, served by a real uvicorn and reached over a raw socket,
so each target reaches the app exactly as the attacker wrote it (an HTTP client would
normalise it first).

The bug these pin: the middleware passed the decoded ``scope["path"]`` to the core, whose
matcher cut it at ``#``/``?``, dropped empty segments and compared HEAD and case exactly,
while Starlette routed the same request elsewhere: ``/files/%23/../report.pdf`` served the
paid file charged as a free rule. And WebSocket connections went through with no key.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import socket
import threading
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

import keyledger
from keyledger.asgi import KeyLedgerMiddleware, raw_target

TABLE_PATH = pathlib.Path(__file__).resolve().parents[1] / "gates" / "hostile_targets.json"
TABLE: Dict[str, Any] = json.loads(TABLE_PATH.read_text())
RULES = {r["id"]: r for r in TABLE["rules"]}
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

Scope = Dict[str, Any]


def labelled(label: str, app: Any) -> Any:
    """An ASGI app that adds ``x-handler: <label>`` to what ``app`` answers."""

    async def wrapped(scope: Scope, receive: Any, send: Any) -> None:
        async def tag(message: Dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = list(message.get("headers") or []) + [(b"x-handler", label.encode())]
            await send(message)

        await app(scope, receive, tag)

    return wrapped


def handler(label: str) -> Any:
    async def endpoint(request: Request) -> Response:
        return PlainTextResponse(label, headers={"x-handler": label})

    return endpoint


def make_app(files_dir: pathlib.Path, vault: keyledger.Vault) -> Any:
    app = Starlette(
        routes=[
            Mount("/files", app=labelled("files-static", StaticFiles(directory=files_dir))),
            Route("/dl/{p:path}", handler("dl"), methods=["GET"]),
            Route("/report", handler("report"), methods=["GET"]),
            Route("/api/v1/messaging/send", handler("send"), methods=["POST"]),
            Route("/api/{rest:path}", handler("api"), methods=ALL_METHODS),
            Route("/items/{id}", handler("items"), methods=["GET"]),
            Route("/{rest:path}", handler("public"), methods=ALL_METHODS),
        ]
    )
    return KeyLedgerMiddleware(app, vault=vault)


def setup_vault(vault: keyledger.Vault) -> Dict[str, str]:
    for r in TABLE["rules"]:
        vault.add_route(r["method"], r["pattern"], r["scope"], cost=r["cost"])
    tokens = {}
    for name, k in TABLE["keys"].items():
        vault.create_account(f"acct_{name}", k["credits"])
        token, _ = vault.create_key(f"acct_{name}", name, k["scopes"])
        tokens[name] = token
    return tokens


class Server:
    """uvicorn serving ``app`` on a free local port, in a thread."""

    def __init__(self, app: Any) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="critical", lifespan="off", ws="wsproto")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> int:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        port: int = self.server.servers[0].sockets[0].getsockname()[1]
        return port

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def raw_request(port: int, method: str, target: bytes, headers: Dict[str, str]) -> Tuple[int, Dict[str, str], bytes]:
    """Send one request line exactly as given; (status, headers, body). Status 0: the
    server closed the connection without an answer."""
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    lines += [f"{k}: {v}".encode() for k, v in headers.items()]
    if method in ("POST", "PUT", "PATCH"):
        lines.append(b"Content-Length: 0")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
        chunks: List[bytes] = []
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    data = b"".join(chunks)
    if not data:
        return 0, {}, b""
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.split(b"\r\n")
    status = int(status_line.split()[1])
    out: Dict[str, str] = {}
    for line in header_lines:
        k, _, v = line.decode("latin-1").partition(":")
        out[k.strip().lower()] = v.strip()
    return status, out, body


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[int, keyledger.Vault, Dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("gate")
    files = tmp / "files"
    files.mkdir()
    (files / "report.pdf").write_bytes(b"PAID REPORT")
    with keyledger.Vault(tmp / "vault.redb", argon2="insecure-fast") as vault:
        tokens = setup_vault(vault)
        with Server(make_app(files, vault)) as port:
            yield port, vault, tokens


def case_id(case: Dict[str, Any]) -> str:
    return f"{case['method']} {case['target']!r}"


@pytest.mark.parametrize("case", TABLE["targets"], ids=case_id)
def test_hostile_target_reaches_the_handler_of_the_rule_it_was_charged_for(
    served: Tuple[int, keyledger.Vault, Dict[str, str]], case: Dict[str, Any]
) -> None:
    port, vault, tokens = served
    expect = case["expect"]
    handlers = set(RULES[expect["rule"]]["handlers"]) if expect.get("rule") else set()
    # The core reads the target as the table says (Starlette routes case-sensitively).
    if "refused" in expect:
        with pytest.raises(keyledger.AmbiguousPath):
            vault.match_request(case["method"], case["target"])
    else:
        rule = vault.match_request(case["method"], case["target"])
        assert (rule.pattern if rule else None) == (RULES[expect["rule"]]["pattern"] if expect["rule"] else None)
    for name, token in tokens.items():
        want = case["outcomes"][name]
        before = vault.balance(f"acct_{name}").credits
        status, headers, body = raw_request(
            port, case["method"], case["target"].encode("utf-8"), {"Authorization": f"Bearer {token}"}
        )
        charged = before - vault.balance(f"acct_{name}").credits
        ran = headers.get("x-handler")
        what = f"{case_id(case)} key={name}: {case['why']} -> {status} {headers} {body[:200]!r}"
        # The server's own HTTP parser may refuse a request line before any app code runs.
        server_refused = charged == 0 and (status == 0 or (status >= 400 and ran is None and b'"success"' not in body))
        if case.get("transport_may_refuse") and server_refused:
            continue
        if want.get("granted"):
            # The gate let it through and charged the rule's cost; the handler that ran,
            # if any (a router 404/405 runs none), is one that rule covers.
            assert charged == want["charged"], what
            assert ran is None or ran in handlers, what
            assert ran is not None or status in (404, 405), what
        else:
            assert ran is None, what
            assert status == want["status"], what
            if case["method"] != "HEAD":  # a HEAD response carries no body
                assert json.loads(body)["error"] == want["code"], what
            assert charged == 0, what


def test_the_paid_file_is_not_served_through_an_encoded_hash(served: Tuple[int, keyledger.Vault, Dict[str, str]]) -> None:
    """The reported exploit, end to end: 200 with the paid file, charged 0, on main."""
    port, _, tokens = served
    auth = {"Authorization": f"Bearer {tokens['attacker']}"}
    status, _, body = raw_request(port, "GET", b"/files/report.pdf", auth)
    assert status == 403
    for target in (b"/files/%23/../report.pdf", b"/files/%3F/../report.pdf", b"/files/%3f/%2e%2e/report.pdf"):
        status, headers, body = raw_request(port, "GET", target, auth)
        assert (status, json.loads(body)["error"]) == (400, "ambiguous_path"), target
        assert b"PAID REPORT" not in body
    status, headers, body = raw_request(port, "GET", b"/files/report.pdf", {"Authorization": f"Bearer {tokens['payer']}"})
    assert (status, headers.get("x-handler"), body) == (200, "files-static", b"PAID REPORT")


# ---------------------------------------------------------------- the scope, directly


def test_raw_target_is_read_undecoded_and_a_missing_raw_path_is_reencoded() -> None:
    assert raw_target({"raw_path": b"/files/%23/../x", "path": "/files/#/../x", "query_string": b"a=%2F"}) == "/files/%23/../x?a=%2F"
    assert raw_target({"raw_path": b"/caf\xc3\xa9", "path": "/café", "query_string": b""}) == "/caf\u00c3\u00a9"
    assert raw_target({"path": "/files/#/../x", "query_string": b""}) == "/files/%23/../x"
    assert raw_target({"path": "/a b;c%2F", "query_string": b"q=1"}) == "/a%20b%3Bc%252F?q=1"
    assert raw_target({"path": "/files/report.pdf"}) == "/files/report.pdf"


def run_scope(app: Any, scope: Scope, messages: Optional[List[Dict[str, Any]]] = None) -> List[Dict[str, Any]]:
    """Run ``app`` on ``scope``; the messages it sent."""
    sent: List[Dict[str, Any]] = []
    incoming = list(messages or [])

    async def receive() -> Dict[str, Any]:
        if incoming:
            return incoming.pop(0)
        await asyncio.Event().wait()
        return {}

    async def send(message: Dict[str, Any]) -> None:
        sent.append(message)

    async def go() -> None:
        await asyncio.wait_for(app(scope, receive, send), 10)

    asyncio.run(go())
    return sent


def http_scope(path: str, token: Optional[str], raw_path: Optional[bytes] = None) -> Scope:
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "query_string": b"",
        "headers": [(b"authorization", f"Bearer {token}".encode())] if token else [],
    }
    if raw_path is not None:
        scope["raw_path"] = raw_path
    return scope


def test_without_raw_path_the_decoded_path_is_refused_when_it_could_mislead(vault: keyledger.Vault, tmp_path: pathlib.Path) -> None:
    tokens = setup_vault(vault)
    (tmp_path / "report.pdf").write_bytes(b"PAID REPORT")
    app = make_app(tmp_path, vault)
    sent = run_scope(app, http_scope("/files/#/../report.pdf", tokens["attacker"]))
    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"])["error"] == "ambiguous_path"
    sent = run_scope(app, http_scope("/files/report.pdf", tokens["attacker"]))
    assert sent[0]["status"] == 403


def ws_scope(path: str, token: Optional[str], extensions: Optional[Dict[str, Any]] = None) -> Scope:
    scope: Scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"authorization", f"Bearer {token}".encode())] if token else [],
        "subprotocols": [],
    }
    if extensions is not None:
        scope["extensions"] = extensions
    return scope


def ws_app(vault: keyledger.Vault, **options: Any) -> Tuple[Any, List[str]]:
    accepted: List[str] = []

    async def endpoint(ws: WebSocket) -> None:
        await ws.accept()
        accepted.append(ws.url.path)
        await ws.close()

    app = Starlette(routes=[WebSocketRoute("/ws/{name}", endpoint)])
    return KeyLedgerMiddleware(app, vault=vault, **options), accepted


def ws_vault(vault: keyledger.Vault) -> Dict[str, str]:
    vault.add_route("GET", "/ws/paid", "ws:paid", cost=1)
    vault.add_route("GET", "/ws/*", "public")
    vault.create_account("acct_ws", 0)
    free, _ = vault.create_key("acct_ws", "free", ["public"])
    return {"free": free}


CONNECT = [{"type": "websocket.connect"}]


def test_websocket_without_a_key_is_closed_before_accept(vault: keyledger.Vault) -> None:
    """On main the middleware passed every WebSocket through with no key at all."""
    app, accepted = ws_app(vault)
    ws_vault(vault)
    sent = run_scope(app, ws_scope("/ws/free", None), CONNECT)
    assert sent == [{"type": "websocket.close", "code": 1008}]
    assert accepted == []


def test_websocket_refusal_uses_the_http_denial_response_when_the_server_offers_it(vault: keyledger.Vault) -> None:
    app, accepted = ws_app(vault)
    tokens = ws_vault(vault)
    ext = {"websocket.http.response": {}}
    sent = run_scope(app, ws_scope("/ws/paid", tokens["free"], ext), CONNECT)
    assert sent[0]["type"] == "websocket.http.response.start"
    assert sent[0]["status"] == 403
    assert json.loads(sent[1]["body"])["error"] == "missing_scope"
    sent = run_scope(app, ws_scope("/ws/%2e%2e/paid", tokens["free"], ext), CONNECT)
    assert sent[0]["status"] == 400
    assert accepted == []


def test_websocket_with_a_granted_key_is_accepted_with_the_grant(vault: keyledger.Vault) -> None:
    app, accepted = ws_app(vault)
    tokens = ws_vault(vault)
    sent = run_scope(app, ws_scope("/ws/free", tokens["free"]), CONNECT)
    assert sent[0]["type"] == "websocket.accept"
    assert accepted == ["/ws/free"]


def test_letting_websockets_through_ungated_is_an_explicit_option(vault: keyledger.Vault) -> None:
    app, accepted = ws_app(vault, websockets="pass")
    ws_vault(vault)
    sent = run_scope(app, ws_scope("/ws/paid", None), CONNECT)
    assert sent[0]["type"] == "websocket.accept"
    assert accepted == ["/ws/paid"]
    with pytest.raises(ValueError):
        KeyLedgerMiddleware(app, vault=vault, websockets="yes")


def ws_handshake(port: int, target: bytes, token: Optional[str]) -> int:
    headers = {
        "Upgrade": "websocket",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    if token:
        headers["Authorization"] = f"Bearer {token}"
    lines = [b"GET " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: Upgrade"]
    lines += [f"{k}: {v}".encode() for k, v in headers.items()]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1]) if data else 0


def test_a_real_server_refuses_an_unkeyed_websocket_handshake(vault: keyledger.Vault) -> None:
    app, accepted = ws_app(vault)
    tokens = ws_vault(vault)
    with Server(app) as port:
        assert ws_handshake(port, b"/ws/free", None) in (401, 403)
        assert ws_handshake(port, b"/ws/paid", tokens["free"]) == 403
        assert ws_handshake(port, b"/ws/free", tokens["free"]) == 101
    assert accepted == ["/ws/free"]
