"""The documentation site, built as `make docs` builds it (mkdocs build --strict) and opened
page by page in a real browser (headless Chromium, driven over the DevTools protocol): every
page renders its heading and content, every picture on it loads, and every link inside the
site leads to a page or file the site has, and to an anchor that page has."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urldefrag, urlsplit

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
# The packages `make docs` installs (pyproject's `docs` extra), by import name.
DOCS_MODULES = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python", "websocket")

# Run in each page once it has loaded: lazy pictures are made eager, every picture is awaited
# (load or error), then what the checks need comes back as plain JSON.
PAGE_REPORT = """(async () => {
  const images = Array.from(document.images);
  images.forEach((img) => { img.loading = "eager"; });
  await Promise.all(images.map((img) => img.complete ? null : new Promise((done) => {
    img.addEventListener("load", done);
    img.addEventListener("error", done);
  })));
  const article = document.querySelector("article");
  const h1 = article ? article.querySelector("h1") : null;
  return {
    h1: h1 ? h1.textContent.trim() : null,
    text: article ? article.innerText.trim().length : 0,
    images: images.map((img) => ({
      src: img.getAttribute("src"),
      url: img.currentSrc,
      loaded: img.complete && img.naturalWidth > 0,
    })),
    links: Array.from(document.querySelectorAll("a[href]"), (a) => a.href),
    ids: Array.from(document.querySelectorAll("[id]"), (e) => e.id),
  };
})()"""


def _chromium() -> str | None:
    return next(
        filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = [m for m in DOCS_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (`make docs` installs the docs extra)")
    if _chromium() is None:
        pytest.skip("no Chromium to open the pages in (Debian: apt-get install chromium)")
    out = tmp_path_factory.mktemp("docs") / "site"
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, f"mkdocs build --strict failed:\n{build.stderr}{build.stdout}"
    return out


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server(site: Path) -> Iterator[str]:
    """The built site over http on a free localhost port, as `make docs-serve` would show it."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


class Browser:
    """One headless Chromium tab, driven over the DevTools protocol."""

    def __init__(self, ws_url: str) -> None:
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=60, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []
        self.call("Page.enable")
        self.call("Runtime.enable")  # so that a script's uncaught exception is reported

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message["result"])
            if "method" in message:  # an event that came meanwhile
                self.events.append(message)

    def open(self, url: str) -> dict[str, Any]:
        """Load `url`, wait for its load event, and return PAGE_REPORT's findings."""
        self.events.clear()
        navigated = self.call("Page.navigate", url=url)
        if "errorText" in navigated:
            raise RuntimeError(f"{url}: {navigated['errorText']}")
        while not any(e["method"] == "Page.loadEventFired" for e in self.events):
            message = json.loads(self.ws.recv())
            if "method" in message:
                self.events.append(message)
        result = self.call(
            "Runtime.evaluate", expression=PAGE_REPORT, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{url}: {result['exceptionDetails']}")
        report = dict(result["result"]["value"])
        report["errors"] = [
            e["params"]["exceptionDetails"].get("exception", {}).get("description", str(e))
            for e in self.events
            if e["method"] == "Runtime.exceptionThrown"
        ]
        return report

    def close(self) -> None:
        self.ws.close()


@pytest.fixture(scope="module")
def browser(site: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    chromium = _chromium()
    assert chromium is not None  # `site` skipped otherwise
    profile = tmp_path_factory.mktemp("chromium")
    port = _free_port()
    with (profile / "stderr.log").open("w") as log:
        process = subprocess.Popen(
            [
                chromium,
                "--headless",
                "--disable-gpu",
                "--no-sandbox",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                f"--user-data-dir={profile / 'profile'}",
                f"--remote-debugging-port={port}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,  # its own process group: the launcher script and its children
        )
    try:
        page_ws = None
        deadline = time.monotonic() + 60
        while page_ws is None:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Chromium did not start:\n{(profile / 'stderr.log').read_text()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                    targets = json.load(r)
                page_ws = next(
                    (t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page"), None
                )
            except OSError:
                pass
            if page_ws is None:
                time.sleep(0.2)
        tab = Browser(page_ws)
        yield tab
        tab.close()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def pages(site: Path, server: str, browser: Browser) -> dict[str, dict[str, Any]]:
    """Every page of the site (its .html files but the 404 page), opened in the browser."""
    paths = sorted(
        p.relative_to(site).as_posix() for p in site.rglob("*.html") if p.name != "404.html"
    )
    assert "index.html" in paths and len(paths) > 20, paths
    return {path: browser.open(server + path) for path in paths}


def test_every_page_renders_its_heading_and_content_without_script_errors(
    pages: dict[str, dict[str, Any]],
) -> None:
    problems = [
        f"{path}: h1 {page['h1']!r}, {page['text']} characters of content"
        for path, page in pages.items()
        if not page["h1"] or page["text"] < 100
    ]
    problems += [f"{path}: {error}" for path, page in pages.items() for error in page["errors"]]
    assert not problems, "\n".join(problems)


def test_every_picture_loads(pages: dict[str, dict[str, Any]], site: Path, server: str) -> None:
    from PIL import Image

    problems = []
    for path, page in pages.items():
        for image in page["images"]:
            if not image["loaded"]:
                problems.append(f"{path}: picture {image['src']} did not load")
                continue
            if not image["url"].startswith(server):
                continue
            # The browser draws what it can of a cut-short file; Pillow decodes all of it.
            try:
                with Image.open(site / unquote(image["url"].removeprefix(server))) as picture:
                    picture.load()
            except OSError as error:
                problems.append(f"{path}: picture {image['src']} is damaged: {error}")
    assert not problems, "\n".join(problems)
    # the pictures are there to be checked: the figures the README had are on the site's pages
    assert sum(len(page["images"]) for page in pages.values()) >= 10


def test_every_link_inside_the_site_resolves(pages: dict[str, dict[str, Any]], server: str) -> None:
    ids = {path: set(page["ids"]) for path, page in pages.items()}
    status: dict[str, int] = {}
    problems = []
    checked = 0
    for path, page in pages.items():
        for href in page["links"]:
            if not href.startswith(server):  # another site: not this test's business
                continue
            url, anchor = urldefrag(href)
            target = unquote(urlsplit(url).path.removeprefix(urlsplit(server).path))
            target = target or "index.html"
            checked += 1
            if target in ids:
                if anchor and anchor not in ids[target]:
                    problems.append(f"{path}: link {href}: no #{anchor} on {target}")
                continue
            if url not in status:
                try:
                    with urllib.request.urlopen(url, timeout=30) as response:
                        status[url] = response.status
                except urllib.error.HTTPError as error:
                    status[url] = error.code
            if status[url] != 200:
                problems.append(f"{path}: link {href}: HTTP {status[url]}")
            elif anchor:
                problems.append(f"{path}: link {href}: an anchor in a file that is not a page")
    assert not problems, "\n".join(problems)
    assert checked > 100, checked
