"""The dashboard's page and static files as the app serves them: content types, cache and security
headers, every asset the page names served from the package, nothing outside ``static/``."""

import re
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from feedback_monitor.dashboard import STATIC
from tests.asgi import BrokenStore, exchange, get
from tests.stores import ThreadedStore

TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


class Assets(HTMLParser):
    """The ``src`` and ``href`` of every element of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in {"src", "href"} and value]


def assets() -> list[str]:
    parser = Assets()
    parser.feed((STATIC / "index.html").read_text())
    return parser.urls


def served(tmp_path: Path, *requests: httpx.Request) -> list[httpx.Response]:
    return exchange(ThreadedStore(BrokenStore()), tmp_path, *requests)


@pytest.mark.parametrize("url", ["/", "/static/index.html"])
def test_the_page_is_html_that_allows_only_its_own_files(tmp_path: Path, url: str) -> None:
    (page,) = served(tmp_path, get(url))
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.text == (STATIC / "index.html").read_text()
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self';" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe" not in policy
    assert page.headers["cache-control"] == "no-cache"
    assert page.headers["x-content-type-options"] == "nosniff"


def test_the_page_names_only_files_of_the_package() -> None:
    urls = assets()
    assert "static/dashboard.js" in urls
    assert "static/vendor/uplot/uPlot.iife.min.js" in urls
    for url in urls:
        assert url.startswith("static/"), url  # relative: no CDN, and it works under a prefix
        assert (STATIC / url.removeprefix("static/")).is_file(), url


@pytest.mark.parametrize("url", assets())
def test_every_asset_is_served_with_its_type_and_revalidated(tmp_path: Path, url: str) -> None:
    (response,) = served(tmp_path, get(f"/{url}"))
    assert response.status_code == 200
    assert response.content == (STATIC / url.removeprefix("static/")).read_bytes()
    assert response.headers["content-type"].startswith(TYPES[Path(url).suffix])
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-content-type-options"] == "nosniff"
    (again,) = served(tmp_path, get(f"/{url}", {"if-none-match": response.headers["etag"]}))
    assert again.status_code == 304


@pytest.mark.parametrize(
    "path",
    [
        "/static/%2e%2e/__init__.py",
        "/static/..%2f__init__.py",
        "/static/%2e%2e/%2e%2e/app.py",
        "/static/",
        "/static/vendor",
        "/static/missing.js",
        "/index.html",
    ],
)
def test_nothing_else_is_served(tmp_path: Path, path: str) -> None:
    (response,) = served(tmp_path, get(path))
    assert response.status_code == 404
    assert response.json() == {"error": "Not Found"}


@pytest.mark.parametrize("url", ["/", "/static/dashboard.js"])
@pytest.mark.parametrize("asked", ["bytes=5-1", "garbage", "bytes=99999999-", "bytes=0-3"])
def test_a_range_is_ignored_for_the_whole_file(tmp_path: Path, url: str, asked: str) -> None:
    """RFC 9110: a server may ignore Range, and must a Range it cannot read (Starlette's own
    answer to one was a 400 in plain text, or an empty 416)."""
    (response,) = served(tmp_path, get(url, {"range": asked}))
    assert response.status_code == 200
    name = "index.html" if url == "/" else url.removeprefix("/static/")
    assert response.content == (STATIC / name).read_bytes()


def test_static_files_are_read_only(tmp_path: Path) -> None:
    request = httpx.Request("POST", "http://test/static/dashboard.js")
    (response,) = served(tmp_path, request)
    assert response.status_code == 405


def test_the_vendored_chart_library_keeps_its_licence_and_version() -> None:
    vendor = STATIC / "vendor" / "uplot"
    assert "MIT License" in (vendor / "LICENSE").read_text()
    header = (vendor / "uPlot.iife.min.js").read_text()[:100]
    version = re.search(r"\(v([\d.]+)\)", header)
    assert version is not None
    assert (vendor / "README.md").read_text().startswith(f"# uPlot {version[1]}\n")


class LiveRegions(HTMLParser):
    """The tags of a page that screen readers read out as they change: an ``output``, an
    ``aria-live`` other than off, or a role that implies one."""

    ROLES = frozenset({"status", "alert", "log", "timer", "marquee"})

    def __init__(self) -> None:
        super().__init__()
        self.live: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if (
            tag == "output"
            or named.get("aria-live", "off") != "off"
            or named.get("role") in self.ROLES
        ):
            self.live.append(f"{tag}#{named.get('id')}")


def test_the_page_has_one_live_region_for_changes_of_state() -> None:
    """Each number rewritten on every refresh as a live region would be read out every 3 s."""
    parser = LiveRegions()
    parser.feed((STATIC / "index.html").read_text())
    assert parser.live == ["p#announce"]
