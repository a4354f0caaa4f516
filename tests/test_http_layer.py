"""The HTTP layer (streaming/http.py) on a real aiohttp server started here, asked by real clients:
each method, 405 with Allow, CORS (preflight and answers) for the configured origins only, a route
module adding POST/PATCH/DELETE, and HTTPS/WSS with a self-signed certificate made by openssl."""

import asyncio
import contextlib
import json
import logging
import shutil
import ssl
import subprocess

import pytest
from aiohttp import ClientSession, web
from websockets.asyncio.client import connect

from conftest import wait_until
from streaming.config import ServerConfig
from streaming.contrib.pyclient import CallClient
from streaming.http import SERVER, Refused
from streaming.server import ROUTE_MODULES, AvatarServer

APP_ORIGIN = "https://app.example"


def add_echo_routes(app: web.Application, server) -> None:
    """A route module as another transport writes one (e.g. WHIP): its own methods on its own path."""
    async def create(request):
        if request.content_type != "application/sdp":
            raise Refused(415, "bad_content_type", "send application/sdp")
        body = await request.text()
        assert request.app[SERVER] is server
        return web.Response(status=201, text=body.upper(), content_type="application/sdp",
                            headers={"Location": "/echo/1", "ETag": '"1"'})

    async def update(request):
        return web.Response(status=204)

    async def delete(request):
        return web.Response(status=200, text="gone")

    app.router.add_post("/echo", create)
    app.router.add_patch("/echo/{id}", update)
    app.router.add_delete("/echo/{id}", delete)


@pytest.fixture
async def server(tiny_profile, monkeypatch):
    """Starts servers with the echo routes and APP_ORIGIN allowed; each is stopped after the test."""
    monkeypatch.setattr("streaming.server.ROUTE_MODULES", ROUTE_MODULES + (add_echo_routes,))
    async with contextlib.AsyncExitStack() as started:
        async def start(**overrides) -> AvatarServer:
            settings = {"port": 0, "compute_allowance_s": 0.2, "allowed_origins": (APP_ORIGIN,), **overrides}
            srv = await AvatarServer(ServerConfig(**settings), tiny_profile).start()
            started.push_async_callback(srv.stop)
            return srv

        yield start


async def request(srv, method: str, path: str, **kwargs):
    async with ClientSession() as session:
        async with session.request(method, f"http://127.0.0.1:{srv.port}{path}", allow_redirects=False,
                                   **kwargs) as r:
            return r.status, r.headers, await r.read()


async def test_each_method_gets_an_answer_and_others_405_with_allow(server, caplog):
    caplog.set_level(logging.INFO)
    srv = await server()
    status, headers, body = await request(srv, "GET", "/healthz")
    assert status == 200 and json.loads(body)["ok"] is True
    status, headers, body = await request(srv, "HEAD", "/demo/")
    assert status == 200 and body == b"" and headers["Content-Type"].startswith("text/html")
    assert int(headers["Content-Length"]) > 100  # the page's length, without the page
    status, headers, body = await request(srv, "POST", "/echo", data=b"v=0\r\n",
                                          headers={"Content-Type": "application/sdp"})
    assert (status, body, headers["Location"], headers["ETag"]) == (201, b"V=0\r\n", "/echo/1", '"1"')
    assert (await request(srv, "POST", "/echo", data=b"x"))[0] == 415  # a module's own refusal
    assert (await request(srv, "PATCH", "/echo/1"))[0] == 204
    assert (await request(srv, "DELETE", "/echo/1"))[:3:2] == (200, b"gone")
    status, headers, _ = await request(srv, "OPTIONS", "/echo/1")
    assert status == 204 and headers["Allow"] == "DELETE, OPTIONS, PATCH"
    status, headers, _ = await request(srv, "OPTIONS", "/healthz")
    assert status == 204 and headers["Allow"] == "GET, HEAD, OPTIONS"
    caplog.clear()
    for method, path, allow in (("POST", "/healthz", "GET, HEAD, OPTIONS"), ("DELETE", "/demo/", "GET, HEAD, OPTIONS"),
                                ("PUT", "/echo/1", "DELETE, OPTIONS, PATCH"), ("TRACE", "/", "GET, HEAD, OPTIONS"),
                                ("PROPFIND", "/ws", "GET, HEAD, OPTIONS"), ("PATCH", "/metrics", "GET, HEAD, OPTIONS")):
        status, headers, body = await request(srv, method, path)
        assert (status, headers["Allow"]) == (405, allow), (method, path)
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)  # a proxy's request: no path at all
    writer.write(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
    assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"HTTP/1.1 405 ")
    writer.close()
    refusals = [r.getMessage() for r in caplog.records if "event=refused" in r.getMessage()]
    assert len(refusals) == 7 and all("reason=method" in line for line in refusals)
    # A method HTTP does not know is refused by the request parser already.
    caplog.clear()
    assert (await request(srv, "BREW", "/"))[0] == 400
    (line,) = [r.getMessage() for r in caplog.records if "event=refused" in r.getMessage()]
    assert "BadHttpMethod" in line
    assert not any(r.exc_info for r in caplog.records)  # no traceback


async def test_cors_only_for_allowed_origins(server, caplog):
    srv = await server()
    own = f"http://127.0.0.1:{srv.port}"
    for origin in (APP_ORIGIN, own):
        status, headers, _ = await request(srv, "OPTIONS", "/echo", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"})
        assert status == 204 and headers["Access-Control-Allow-Origin"] == origin
        assert headers["Access-Control-Allow-Methods"] == "OPTIONS, POST"
        assert {h.strip() for h in headers["Access-Control-Allow-Headers"].split(",")} >= {"Authorization",
                                                                                          "Content-Type"}
        assert headers["Vary"] == "Origin"
    status, headers, _ = await request(srv, "POST", "/echo", data=b"v=0", headers={
        "Origin": APP_ORIGIN, "Content-Type": "application/sdp"})
    assert status == 201 and headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert "Location" in headers["Access-Control-Expose-Headers"]  # a page can read where its resource is
    status, headers, _ = await request(srv, "GET", "/healthz", headers={"Origin": APP_ORIGIN})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == APP_ORIGIN

    caplog.clear()
    for evil in ("https://evil.example", f"https://127.0.0.1:{srv.port}", "null"):
        status, headers, _ = await request(srv, "OPTIONS", "/echo", headers={
            "Origin": evil, "Access-Control-Request-Method": "POST"})
        assert status == 403 and "Access-Control-Allow-Origin" not in headers
        status, headers, _ = await request(srv, "POST", "/echo", data=b"v=0", headers={
            "Origin": evil, "Content-Type": "application/sdp"})
        assert status == 403 and "Access-Control-Allow-Origin" not in headers  # never reaches the handler
        status, headers, _ = await request(srv, "DELETE", "/echo/1", headers={"Origin": evil})
        assert status == 403
        status, headers, _ = await request(srv, "GET", "/healthz", headers={"Origin": evil})
        assert status == 200 and "Access-Control-Allow-Origin" not in headers  # answered, unreadable by the page
    refusals = [r.getMessage() for r in caplog.records if "event=refused" in r.getMessage()]
    assert len(refusals) == 9 and all("reason=origin" in line for line in refusals)
    # The Host header never makes an origin allowed (DNS rebinding).
    status, _, _ = await request(srv, "POST", "/echo", data=b"v=0", headers={
        "Origin": "http://rebind.example", "Host": "rebind.example", "Content-Type": "application/sdp"})
    assert status == 403


async def test_the_websocket_gate_and_protocol_are_unchanged(server):
    srv = await server(token="s3cret")
    assert (await request(srv, "GET", "/ws?token=s3cret"))[0] == 426  # plain HTTP on the websocket path
    assert (await request(srv, "GET", "/ws"))[0] == 401
    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    assert (await request(srv, "HEAD", "/ws?token=s3cret", headers=upgrade))[0] == 426  # only GET upgrades
    assert (await request(srv, "GET", "/ws?token=s3cret", headers={**upgrade, "Sec-WebSocket-Version": "6"}))[0] == 400
    async with connect(f"ws://127.0.0.1:{srv.port}/ws", origin=APP_ORIGIN,
                       additional_headers={"Authorization": "Bearer s3cret"}) as ws:
        ready = json.loads(await ws.recv())
        assert ready["type"] == "ready" and ready["avatars"] == ["drawn", "astronaut"]
        await ws.send('{"type": "ping"}')
        assert json.loads(await ws.recv()) == {"type": "pong"}


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


@pytest.mark.slow
async def test_https_and_wss_with_a_self_signed_certificate(server, certificate, speech_hello, monkeypatch):
    cert, key = certificate
    srv = await server(tls_cert=str(cert), tls_key=str(key))
    assert srv.url == f"https://127.0.0.1:{srv.port}/demo/"
    trusted = ssl.create_default_context(cafile=str(cert))
    async with ClientSession() as session:
        async with session.get(f"https://127.0.0.1:{srv.port}/healthz", ssl=trusted) as r:
            assert r.status == 200 and (await r.json())["ok"] is True
        async with session.get(f"https://127.0.0.1:{srv.port}/demo/", ssl=trusted) as r:
            assert r.status == 200 and b"<video" in await r.read()
        with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):  # not trusted without it
            await session.get(f"https://127.0.0.1:{srv.port}/healthz")
    # Plain HTTP on the TLS port is not answered as HTTP.
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert not (await asyncio.wait_for(reader.read(100), 5)).startswith(b"HTTP/1.1 200")
    writer.close()
    # The server's own https origin is allowed, its http one is not.
    for origin, allowed in ((f"https://127.0.0.1:{srv.port}", True), (f"http://127.0.0.1:{srv.port}", False)):
        async with ClientSession() as session:
            async with session.options(f"https://127.0.0.1:{srv.port}/echo", ssl=trusted, headers={
                    "Origin": origin, "Access-Control-Request-Method": "POST"}) as r:
                assert r.status == (204 if allowed else 403)
    # The Python client, as it is, over wss (it trusts the certificate through the environment).
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    client = await CallClient.open(f"wss://127.0.0.1:{srv.port}/ws", speech_hello, 16000)
    try:
        await wait_until(lambda: len(client.received.video) > 0, timeout=15)
    finally:
        await client.close()


def test_bad_tls_files_are_refused_with_a_message(tmp_path, capsys):
    from argparse import Namespace

    from streaming.server import serve_main

    (tmp_path / "cert.pem").write_text("not a certificate")
    args = Namespace(host="127.0.0.1", port=0, profile="tiny-random", max_sessions=2, token=None, weights=None,
                     device="cpu", tls_cert=str(tmp_path / "cert.pem"), tls_key=None)
    assert serve_main(args) == 2
    assert "--tls-cert" in capsys.readouterr().err
