"""Open a page in headless Chromium and read it through the DevTools protocol.

A small, dependency-free client: Chromium is started with ``--remote-debugging-port=0``
(it picks a free port and prints the address on stderr), the page target is driven over
a WebSocket (RFC 6455, text frames, implemented here on :mod:`socket`), and the result is
the console messages and exceptions seen while loading, the values of a JavaScript
expression evaluated in the page, and a full-page PNG screenshot.

Only loopback addresses are used; the browser runs with networking extras switched off.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--disable-default-apps", "--hide-scrollbars",
    "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
]


def find_chromium() -> str | None:
    """Path of a Chromium executable, or None (``GLMFLOW_CHROMIUM`` overrides)."""
    env = os.environ.get("GLMFLOW_CHROMIUM")
    if env:
        return env if Path(env).exists() else shutil.which(env)
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageResult:
    """What the browser saw."""

    console: list = field(default_factory=list)  # (level, text) of console messages
    exceptions: list = field(default_factory=list)  # uncaught JS exceptions
    log_errors: list = field(default_factory=list)  # browser log entries of level error
    value: object = None  # result of the evaluated expression
    screenshot: Path | None = None

    @property
    def errors(self) -> list:
        """Console errors, exceptions and error log entries, as text."""
        return ([text for level, text in self.console if level in ("error", "assert")]
                + self.exceptions + self.log_errors)


class _WebSocket:
    """Minimal WebSocket client (text frames, masked as a client must)."""

    def __init__(self, url: str, timeout: float = 30.0):
        match = re.match(r"ws://([^/:]+):(\d+)(/.*)", url)
        if not match:
            raise ValueError(f"Unexpected DevTools URL {url!r}")
        host, port, path = match.group(1), int(match.group(2)), match.group(3)
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(request.encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed the connection during the handshake")
            response += chunk
        head, self.buffer = response.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"WebSocket handshake refused: {head[:200]!r}")

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(max(65536, n - len(self.buffer)))
            if not chunk:
                raise ConnectionError("DevTools connection closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def send(self, text: str):
        payload = text.encode()
        header = bytearray([0x81])  # FIN + text
        length = len(payload)
        if length < 126:
            header.append(0x80 | length)
        elif length < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", length)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", length)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes(header) + mask + masked)

    def recv(self) -> str:
        message = b""
        while True:
            first, second = self._read(2)
            opcode, length = first & 0x0F, second & 0x7F
            if length == 126:
                length = struct.unpack("!H", self._read(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", self._read(8))[0]
            if second & 0x80:  # servers do not mask, but be tolerant
                mask = self._read(4)
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(self._read(length)))
            else:
                data = self._read(length)
            if opcode == 0x8:
                raise ConnectionError("DevTools closed the WebSocket")
            if opcode == 0x9:  # ping -> pong
                continue
            if opcode in (0x0, 0x1, 0x2):
                message += data
                if first & 0x80:
                    return message.decode()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class _DevTools:
    def __init__(self, ws: _WebSocket, result: PageResult):
        self.ws, self.result, self.next_id, self.events = ws, result, 0, []

    def call(self, method, **params):
        self.next_id += 1
        call_id = self.next_id
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._event(message)

    def wait_for(self, event, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(e.get("method") == event for e in self.events):
                return True
            self.ws.sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                self._event(json.loads(self.ws.recv()))
            except TimeoutError:
                break
        return any(e.get("method") == event for e in self.events)

    def _event(self, message):
        method = message.get("method")
        if not method:
            return
        self.events.append({"method": method})
        params = message.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", "")))
                            for a in params.get("args", []))
            self.result.console.append((params.get("type"), text))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.result.exceptions.append(
                details.get("exception", {}).get("description") or details.get("text", ""))
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            if entry.get("level") == "error":
                self.result.log_errors.append(f"{entry.get('source')}: {entry.get('text')} "
                                              f"{entry.get('url', '')}".strip())


def open_page(url: str, *, expression: str | None = None, screenshot: Path | None = None,
              window=(1400, 1000), timeout: float = 60.0, chromium: str | None = None
              ) -> PageResult:
    """Load ``url`` in headless Chromium; collect console errors, evaluate, screenshot.

    Parameters
    ----------
    url : str
        e.g. ``Path(...).as_uri()``.
    expression : str, optional
        JavaScript evaluated after the load event; its JSON-able value is returned.
    screenshot : Path, optional
        Where to write a full-page PNG.
    window : (int, int)
        Viewport width and height in CSS pixels.
    """
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError("No Chromium executable found")
    result = PageResult()
    profile = tempfile.mkdtemp(prefix="glmflow-chromium-")
    process = subprocess.Popen(
        [chromium, *FLAGS, f"--user-data-dir={profile}",
         f"--window-size={window[0]},{window[1]}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    ws = None
    try:
        port = _devtools_port(process, timeout)
        # keep draining stderr so a chatty browser never blocks on a full pipe
        threading.Thread(target=process.stderr.read, daemon=True).start()
        page_url = _page_target(port, timeout)
        ws = _WebSocket(page_url, timeout=timeout)
        tools = _DevTools(ws, result)
        for domain in ("Runtime", "Log", "Page"):
            tools.call(f"{domain}.enable")
        tools.call("Emulation.setDeviceMetricsOverride", width=window[0], height=window[1],
                   deviceScaleFactor=1, mobile=False)
        tools.events.clear()
        tools.call("Page.navigate", url=url)
        if not tools.wait_for("Page.loadEventFired", timeout):
            raise TimeoutError(f"{url} did not finish loading within {timeout} s")
        time.sleep(0.3)  # let late console messages arrive
        tools.call("Runtime.evaluate", expression="0")
        if expression is not None:
            answer = tools.call("Runtime.evaluate", expression=expression, returnByValue=True,
                                awaitPromise=True)
            if "exceptionDetails" in answer:
                raise RuntimeError(f"Evaluating the check failed: {answer['exceptionDetails']}")
            result.value = answer.get("result", {}).get("value")
        if screenshot is not None:
            shot = tools.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                              fromSurface=True)
            screenshot = Path(screenshot)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            result.screenshot = screenshot
        return result
    finally:
        if ws is not None:
            ws.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(profile, ignore_errors=True)


def _devtools_port(process, timeout) -> int:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            if process.poll() is not None:
                break
            continue
        seen.append(line)
        match = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
        if match:
            return int(match.group(1))
    raise RuntimeError("Chromium did not start its DevTools server:\n" + "".join(seen[-20:]))


def _page_target(port, timeout) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # loopback only: bypass any proxy configured in the environment
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{port}/json/list", timeout=5) as answer:
            targets = json.load(answer)
        pages = [t for t in targets if t.get("type") == "page"]
        if pages:
            return pages[0]["webSocketDebuggerUrl"]
        time.sleep(0.1)
    raise RuntimeError("Chromium opened no page target")
