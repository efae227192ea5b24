"""The docs render their mathematics without network: MathJax ships with the build (the
sphinx-mathjax-offline package) and is loaded by a relative path. The Mathematics page is built
with the docs' own configuration; where Chromium is installed it renders the page with all
network names unresolvable and no raw TeX may remain.

Also: every figure the pages embed exists and is small. Needs the ``docs`` extra (skipped
without it) and, for the rendering, Debian's ``chromium``
package (``apt-get install chromium``; skipped without it)."""

import importlib.util
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
NEEDED = ("sphinx", "myst_parser", "furo", "sphinx-mathjax-offline")
MISSING = [m for m in NEEDED if importlib.util.find_spec(m) is None]


class _Assets(HTMLParser):
    """The ``src`` of every script and the ``href`` of every stylesheet of a page."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and attrs.get("src"):
            self.urls.append(attrs["src"])
        if tag == "link" and "stylesheet" in (attrs.get("rel") or "") and attrs.get("href"):
            self.urls.append(attrs["href"])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The HTML of the Mathematics page, built with docs/conf.py into a temporary folder."""
    if MISSING:
        pytest.skip(f"the docs extra is not installed (missing {', '.join(MISSING)})")
    from sphinx.application import Sphinx

    root = tmp_path_factory.mktemp("docs")
    src = root / "src"
    src.mkdir()
    shutil.copy(DOCS / "mathematics.md", src)
    (src / "index.md").write_text("# pdunroll\n\n```{toctree}\nmathematics\n```\n")
    app = Sphinx(str(src), str(DOCS), str(root / "html"), str(root / "doctrees"), "html",
                 status=None, warning=None, freshenv=True)
    app.build()
    return root / "html"


def _math_count(html: str) -> int:
    """Formulas of a page as Sphinx writes them: inline \\( \\) and display \\[ \\]."""
    return html.count("\\(") + html.count("\\[")


def test_mathjax_ships_with_the_pages_and_is_loaded_relatively(built):
    page = built / "mathematics.html"
    html = page.read_text()
    assert _math_count(html) > 100  # the page's formulas are there to render
    parser = _Assets()
    parser.feed(html)
    mathjax = [u for u in parser.urls if "mathjax" in u.lower()]
    assert mathjax, "no MathJax script on the page"
    for url in parser.urls:
        assert not re.match(r"^([a-z]+:)?//", url), f"{url}: a remote asset"
        assert (page.parent / url.split("?")[0]).is_file(), f"{url}: not in the build"
    # CommonHTML output loads its fonts relative to the script: they must be there too
    fonts = (page.parent / mathjax[0]).parent / "output" / "chtml" / "fonts" / "woff-v2"
    assert len(list(fonts.glob("*.woff"))) > 10


def test_mathematics_renders_offline_in_chromium(built):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    page = built / "mathematics.html"
    out = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu",
         "--host-resolver-rules=MAP * ~NOTFOUND",  # no name resolves: no network
         "--virtual-time-budget=30000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=180, check=True).stdout
    dom = re.sub(r"<(script|style)\b.*?</\1>", "", out, flags=re.S)
    source = _math_count(page.read_text())
    assert dom.count("<mjx-container") == source, "not every formula was typeset"
    assert "mjx-merror" not in dom, "MathJax reported a TeX error"
    leftover = [m for m in ("\\(", "\\[", "$$") if m in dom]
    assert not leftover, f"raw TeX left on the page: {leftover}"


def test_figures_are_embedded_and_small():
    """Every image a page embeds exists and is under 100 kB, and every tutorial figure (made
    by docs/figures.py) is embedded somewhere."""
    embedded = set()
    for page in DOCS.rglob("*.md"):
        if "_build" in page.parts:
            continue
        text = page.read_text()
        refs = re.findall(r"```\{(?:figure|image)\}\s+(\S+)", text)
        refs += re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", text)
        for ref in refs:
            path = (page.parent / ref).resolve()
            assert path.is_file(), f"{page.name}: {ref} does not exist"
            assert path.stat().st_size < 100_000, f"{ref}: {path.stat().st_size} bytes"
            embedded.add(path)
    figures = set((DOCS / "tutorials" / "figures").glob("*.png"))
    assert figures, "no tutorial figures"
    assert figures <= embedded, sorted(p.name for p in figures - embedded)
