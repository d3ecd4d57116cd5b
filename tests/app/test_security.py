"""The running app refuses what a web page elsewhere could make a browser send it."""
from __future__ import annotations

import base64
import os
import socket
from urllib.parse import urlparse

from tests.app.browser import streamlit_app


def websocket_status(url: str, host: str) -> str:
    """The status line the app answers to a WebSocket upgrade that says `Host: host` (and Origin from it)."""
    port = urlparse(url).port
    key = base64.b64encode(os.urandom(16)).decode()
    request = (f"GET /_stcore/stream HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request.encode())
        return sock.recv(4096).decode(errors="replace").split("\r\n", 1)[0]


def test_a_websocket_from_a_rebound_host_name_is_refused_and_loopback_accepted(tmp_path):
    with streamlit_app(tmp_path) as url:
        port = urlparse(url).port
        assert " 101 " in websocket_status(url, f"127.0.0.1:{port}")
        assert " 101 " in websocket_status(url, f"localhost:{port}")
        refused = websocket_status(url, f"rebind.evil.example:{port}")
        assert " 101 " not in refused and refused.startswith("HTTP/1.1 4"), refused
