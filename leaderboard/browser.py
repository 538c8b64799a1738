"""Headless Chromium driven over the DevTools protocol on a pipe: the browser test and the README's
screenshot of the site use it.

``--remote-debugging-pipe`` speaks the protocol over file descriptors 3 and 4 (NUL-terminated
JSON), so no port is opened, no WebSocket library is needed, and it works inside a network
namespace that has no network at all. Only Debian's ``chromium`` is used: nothing is downloaded.
As root (CI), Chromium needs ``--no-sandbox``.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from cud_bench.errors import CudBenchError

FLAGS = (
    "--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-extensions", "--disable-quic", "--mute-audio",
    "--remote-debugging-pipe",
)


def find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """One headless Chromium with one page; collects what the page's console reports as errors."""

    def __init__(self, width: int = 1280, height: int = 900, timeout: float = 60.0) -> None:
        exe = find_chromium()
        if exe is None:
            raise CudBenchError("headless Chromium is missing: install Debian's chromium package (setup.sh does)")
        self.timeout = timeout
        self.profile = tempfile.TemporaryDirectory(prefix="cud-bench-chromium-")
        to_child, self._out = os.pipe()  # the browser reads commands on fd 3
        self._in, from_child = os.pipe()  # and writes replies and events on fd 4
        flags = [*FLAGS, f"--user-data-dir={self.profile.name}", f"--window-size={width},{height}"]
        if os.geteuid() == 0:
            flags.append("--no-sandbox")

        def wire() -> None:  # in the child: the pipe ends on the descriptors Chromium expects, inheritable
            read, write = os.dup(to_child), os.dup(from_child)  # above 4, so neither dup2 clobbers the other
            os.dup2(read, 3)
            os.dup2(write, 4)

        self.process = subprocess.Popen(
            [exe, *flags, "about:blank"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=wire, close_fds=False,
        )
        os.close(to_child)
        os.close(from_child)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None
        target = self.call("Target.createTarget", {"url": "about:blank"}, session=None)["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True}, session=None)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    # -- the protocol --------------------------------------------------------------------
    def call(self, method: str, params: dict[str, Any] | None = None, *, session: str | None | bool = True) -> dict[str, Any]:
        """Send one command (to the page's session unless ``session`` says otherwise) and wait for its reply."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        sid = self.session if session is True else session
        if sid:
            message["sessionId"] = sid
        os.write(self._out, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def _read(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._in], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError(f"Chromium sent nothing for {self.timeout:.0f} s")
            chunk = os.read(self._in, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe (it exited)")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def wait_event(self, method: str) -> dict[str, Any]:
        for i, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(i)
        while True:
            event = self._read()
            if event.get("method") == method:
                return event
            self.events.append(event)

    # -- the page ------------------------------------------------------------------------
    def open(self, url: str) -> None:
        """Navigate and wait for the load event."""
        self.events = [e for e in self.events if e.get("method") != "Page.loadEventFired"]
        self.call("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired")

    def js(self, expression: str) -> Any:
        """Evaluate ``expression`` in the page (promises awaited) and return its value."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click (pressed and released) at the middle of the element ``selector``."""
        box = self.js(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.scrollIntoView({{block: 'center'}});"
            " const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1], "button": "left", "clickCount": 1})

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads the page reported so far."""
        self.js("0")  # flush: events sent before this reply are read
        out = []
        for e in self.events:
            method, p = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                out.append("exception: " + json.dumps(p.get("exceptionDetails", {}))[:500])
            elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append("log: " + p["entry"].get("text", "") + " " + p["entry"].get("url", ""))
            elif method == "Network.loadingFailed" and not p.get("canceled"):
                out.append("load failed: " + p.get("errorText", ""))
        return out

    def screenshot(self, path: Path, colours: int = 128) -> int:
        """The viewport as a palette PNG (small enough to commit); returns its size in bytes."""
        import io

        from PIL import Image

        from cud_bench.io import write_bytes_atomic

        png = base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"})["data"])
        image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=colours, method=Image.Quantize.MEDIANCUT)
        out = io.BytesIO()
        image.save(out, format="png", optimize=True)
        write_bytes_atomic(Path(path), out.getvalue())
        return len(out.getvalue())

    def close(self) -> None:
        try:
            self.call("Browser.close", session=None)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self._in, self._out):
            try:
                os.close(fd)
            except OSError:
                pass
        self.profile.cleanup()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m leaderboard.browser PAGE.html OUT.png [WIDTH HEIGHT]``: a screenshot of a page's top (the README's)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (2, 4):
        print(main.__doc__, file=sys.stderr)
        return 2
    width, height = (int(args[2]), int(args[3])) if len(args) == 4 else (1280, 900)
    with Browser(width, height) as browser:
        browser.open(Path(args[0]).resolve().as_uri())
        problems = browser.errors()
        size = browser.screenshot(Path(args[1]))
    print(f"{args[1]}: {size:,} bytes" + (f"; the page reported: {problems}" if problems else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
