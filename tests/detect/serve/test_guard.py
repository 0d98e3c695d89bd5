"""detect.serve.guard against a real `detect serve` process on loopback: clients that never finish
their headers are closed after --header-timeout (408), connections past --max-connections are
closed at once, and the server keeps answering everyone else."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from tests.detect.serve.conftest import LiveServer

HEADER_TIMEOUT_S = 1.0
MAX_CONNECTIONS = 20


@pytest.fixture(scope="module")
def guarded_server(checkpoint, tmp_path_factory):
    server = LiveServer(
        checkpoint,
        tmp_path_factory.mktemp("guard_log") / "serve.log",
        "--header-timeout",
        str(HEADER_TIMEOUT_S),
        "--max-connections",
        str(MAX_CONNECTIONS),
    )
    yield server
    server.stop()


def _slow_client(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # the headers never end
    return sock


def _closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """(closed by the server within `seconds`, what it sent before closing)."""
    sock.settimeout(seconds)
    received = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return True, received
            received += chunk
    except TimeoutError:
        return False, received
    except ConnectionResetError:
        return True, received


def test_a_client_that_never_finishes_its_headers_is_closed_with_408(guarded_server):
    sock = _slow_client(guarded_server.port)
    try:
        started = time.monotonic()
        for _ in range(3):  # a byte now and then does not keep it open
            time.sleep(0.3)
            sock.sendall(b"x")
        closed, received = _closed_within(sock, 5)
        assert closed and HEADER_TIMEOUT_S - 0.1 <= time.monotonic() - started < HEADER_TIMEOUT_S + 3
        assert received.startswith(b"HTTP/1.1 408 ")
    finally:
        sock.close()
    assert "request headers not received within 1 s" in guarded_server.log_text()


def test_many_slow_clients_are_all_closed_and_the_server_keeps_answering(guarded_server):
    socks = [_slow_client(guarded_server.port) for _ in range(MAX_CONNECTIONS + 10)]
    try:
        time.sleep(0.3)
        # past the limit: closed at once, before the header deadline
        early = [_closed_within(s, 0.05)[0] for s in socks[MAX_CONNECTIONS:]]
        assert all(early), early
        started = time.monotonic()
        late = [_closed_within(s, HEADER_TIMEOUT_S + 3)[0] for s in socks[:MAX_CONNECTIONS]]
        assert all(late) and time.monotonic() - started < HEADER_TIMEOUT_S + 3
    finally:
        for s in socks:
            s.close()
    answer = httpx.get(guarded_server.url + "/healthz", timeout=5)
    assert answer.status_code == 200
    assert "connection refused: " in guarded_server.log_text()


def test_keep_alive_requests_are_not_cut(guarded_server):
    with httpx.Client(base_url=guarded_server.url, timeout=5) as client:
        for _ in range(3):
            assert client.get("/healthz").status_code == 200
            time.sleep(0.4)  # under the header deadline each time, over it in all


def test_the_token_help_points_to_the_environment_variable():
    from typer.testing import CliRunner

    from cli import app

    result = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "Prefer the DETECT_SERVE_TOKEN environment variable" in text and "visible to every user in `ps`" in text
