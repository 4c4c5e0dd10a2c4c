"""Who may open the live view: the real Starlette app under a real uvicorn server on loopback, asked over HTTP with
forged Host headers and with and without its token (the page itself is tested in a browser in tests/system)."""

from __future__ import annotations

import http.client
import threading
import time

import pytest
import uvicorn

from blinkstack.local.processes import free_port
from blinkstack.tools.view import Hub, allowed_hosts, build_app


@pytest.fixture
def view_server():
    servers = []

    def start(hosts: list[str], token: str = "") -> int:
        port = free_port()
        config = uvicorn.Config(build_app(Hub(), hosts, token), host="127.0.0.1", port=port, log_level="warning")
        server = uvicorn.Server(config)
        threading.Thread(target=server.run, daemon=True).start()
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        servers.append(server)
        return port

    yield start
    for server in servers:
        server.should_exit = True


def get(port: int, path: str, host: str, cookie: str = "") -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.request("GET", path, headers={"Host": host, **({"Cookie": cookie} if cookie else {})})
    response = connection.getresponse()
    response.read()
    return response


def test_a_foreign_host_header_gets_400_dns_rebinding_is_refused(view_server):
    port = view_server(allowed_hosts("127.0.0.1", []))
    assert get(port, "/", f"127.0.0.1:{port}").status == 200
    assert get(port, "/", f"localhost:{port}").status == 200
    assert get(port, "/", "evil.example").status == 400
    assert get(port, "/stream", "evil.example").status == 400
    assert get(port, "/static/view.js", "evil.example:8765").status == 400


def test_a_view_on_every_address_must_name_its_hosts():
    with pytest.raises(ValueError, match="--allowed-host"):
        allowed_hosts("0.0.0.0", [])
    assert "cam-room.local" in allowed_hosts("0.0.0.0", ["cam-room.local"])
    assert "[::1]" in allowed_hosts("127.0.0.1", [])


def test_with_a_token_the_page_needs_it_once_then_a_cookie(view_server):
    port = view_server(allowed_hosts("127.0.0.1", []), token="t0k")
    host = f"127.0.0.1:{port}"
    assert get(port, "/", host).status == 401
    assert get(port, "/?token=wrong", host).status == 401
    opened = get(port, "/?token=t0k", host)
    assert opened.status == 303 and opened.getheader("Location") == "/"
    cookie = opened.getheader("Set-Cookie")
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    assert get(port, "/", host, cookie.split(";")[0]).status == 200
    assert get(port, "/static/view.js", host, cookie.split(";")[0]).status == 200
    assert get(port, "/", "evil.example", cookie.split(";")[0]).status == 400
