"""Rendered-page check: load every page of the built book in headless Chromium and look at it.

`make test` runs this file with pytest after the strict ci build (it is not under tests/, so a
plain `pytest` does not run it):

    BOOK_HTML=_build/ci/_build/html pytest tools/check_rendered.py

or, as a script, on any built book:

    python tools/check_rendered.py [_build/html]

It serves the HTML folder on 127.0.0.1 (a free port, http.server in a thread) and, for each page
of _toc.yml, checks that the page has its title; that no cell output shows a traceback or an
error; that every image has loaded; that MathJax has typeset all the math (no raw `$$`, `\\(` or
`\\[` left in the text, no TeX error, an mjx-container for every math element); that every
internal link resolves (HTTP 200, and its #anchor exists); that nothing was fetched from outside
(the book must work offline) and that no JavaScript error was raised. It saves screenshots under
_build/ (the landing page as _build/screenshot-landing.png).

Needs Playwright (`make setup` installs it) and Debian's Chromium (`apt-get install chromium`);
Playwright's own browser download is not used.
"""

from __future__ import annotations

import functools
import html
import os
import re
import shutil
import sys
import threading
import urllib.error
import urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from toc_notebooks import toc_docnames  # noqa: E402

HTML_DIR = Path(os.environ.get("BOOK_HTML", ROOT / "_build" / "ci" / "_build" / "html"))
SCREENSHOTS = ROOT / "_build"
BUILD_EXIT_CODE = os.environ.get("BOOK_BUILD_EXIT_CODE")  # a file written by `make test`
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
MATHJAX_TIMEOUT_MS = 30_000
# Text of the main content (code and typeset math removed) must not contain these.
RAW_MATH = re.compile(r"\$\$|\\\(|\\\)|\\\[|\\\]|\\begin\{")
UNRENDERED_ROLE = re.compile(r"\{(glue(:\w+)?|term|cite(:\w+)?|ref|doc|numref|eq|math)\}`")


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("the rendered-page check needs Chromium and none is installed: apt-get install chromium",
                pytrace=False)


def page_paths() -> list[str]:
    """The HTML path of every TOC page, relative to the HTML folder."""
    return [f"{doc}.html" for doc in toc_docnames()]


# --------------------------------------------------------------------------------------------
# Fixtures: one server and one browser for all the pages.


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - http.server's signature
        pass


@pytest.fixture(scope="module")
def server():
    if not (HTML_DIR / "index.html").is_file():
        pytest.fail(f"no built book in {HTML_DIR}: build it first (make test does: "
                    "SAM_COURSE_PROFILE=ci jupyter-book build . --path-output _build/ci), "
                    "or point BOOK_HTML at a built book", pytrace=False)
    handler = functools.partial(_QuietHandler, directory=str(HTML_DIR))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the rendered-page check needs Playwright: make setup (or pip install playwright)",
                    pytrace=False)
    executable = find_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def link_cache():
    """URL (without fragment) -> (HTTP status, set of element ids), shared by all pages."""
    return {}


def fetch(url: str, cache: dict) -> tuple[int, set[str]]:
    if url not in cache:
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                body = response.read().decode("utf-8", errors="replace")
                ids = set(re.findall(r'\bid="([^"]+)"', body)) if response.headers.get_content_type() == "text/html" else set()
                cache[url] = (response.status, {html.unescape(i) for i in ids})
        except urllib.error.HTTPError as error:
            cache[url] = (error.code, set())
    return cache[url]


# --------------------------------------------------------------------------------------------
# The checks


def test_strict_build_succeeded():
    """`make test` records the exit code of the strict ci build; it must be 0."""
    if not BUILD_EXIT_CODE:
        pytest.skip("BOOK_BUILD_EXIT_CODE not set (not run by make test)")
    path = Path(BUILD_EXIT_CODE)
    assert path.is_file(), f"{path} is missing: the strict book build did not run"
    code = path.read_text().strip()
    assert code == "0", (f"the strict book build (jupyter-book build -W -n --keep-going) failed with exit "
                         f"code {code}: its warnings are printed above this test run")


def test_toc_pages_were_built():
    missing = [p for p in page_paths() if not (HTML_DIR / p).is_file()]
    assert not missing, f"pages of _toc.yml missing from {HTML_DIR}: {missing}"


# ------------------------------------------------------------------ static checks of the HTML
# Defects a reader sees that the browser check above cannot: prose swallowed into a math span by
# mismatched `$`, pandas tables cut short, Markdown printed raw in an output, a role's default text
# doubled ("exercise Exercise 6"), placeholders left in the text.

MATH_SPAN = re.compile(r'<(span|div) class="math[^"]*">(.*?)</\1>', re.S)
#: In a math span's TeX these mean the span holds prose or a role: its `$` were mismatched.
PROSE_IN_MATH = re.compile(r"\{(glue|term|ref|cite)|`|\\\)\s*\w|\w\s*\\\(|(?:\b[a-z]{3,}\b[ ,.;]+){6,}")
OUTPUT_BLOCK = re.compile(r'<div class="cell_output[^"]*">(.*?)</div>\s*</div>', re.S)
TRUNCATED_CELL = re.compile(r"<t[dh][^>]*>[^<]*(\.\.\.|…)\s*</t[dh]>")
PLACEHOLDERS = re.compile(r"<repository URL>|\bTODO\b|\bFIXME\b|\b(exercise|section|fig\.?|table|chapter) \1\b", re.I)
#: A table header that is a Python identifier (``final_test_acc_mean``): report.readable renames it.
RAW_HEADER = re.compile(r"<th[^>]*>\s*([a-z][a-z0-9]*(?:_[a-z0-9]+)+)\s*</th>")
#: A number where a reference belongs: exercises and figures are numbered book-wide, so a typed
#: number goes stale when one is added; {ref}/{numref} keep it right.
#: ("Figure 3" is left alone: the chapters cite the paper's figures by their number.)
TYPED_REFERENCE = re.compile(r"\b[Ee]xercises? \d+\b|\bFig\. \d+\b")
#: Elements whose text is generated (links, captions' numbers, admonition titles) or is code.
GENERATED = re.compile(r'<(a|pre|code|script|style)\b.*?</\1>|<span class="caption-number">.*?</span>'
                       r'|<p class="admonition-title">.*?</p>', re.S)


def page_html(path: str) -> str:
    return (HTML_DIR / path).read_text(encoding="utf-8")


def visible_text(fragment: str) -> str:
    """The text of an HTML fragment, tags and scripts removed, entities decoded."""
    fragment = re.sub(r"<(script|style)\b.*?</\1>", "", fragment, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def static_defects(source: str) -> list[str]:
    """Everything :data:`PROSE_IN_MATH`, :data:`TRUNCATED_CELL`, raw Markdown in outputs and
    :data:`PLACEHOLDERS` find in one page's HTML."""
    found = []
    for _, tex in MATH_SPAN.findall(source):
        tex = html.unescape(tex)
        # Words inside \text{...} are meant (a function's name beside a formula, say).
        if PROSE_IN_MATH.search(re.sub(r"\\text\{[^{}]*\}", "", tex)):
            found.append(f"prose or a role inside math (mismatched $?): {tex.strip()[:160]!r}")
    # A column the prose names as code (`error_std`) is an API name the page teaches: it stays.
    prose_html = OUTPUT_BLOCK.sub("", source)
    named_in_code = {visible_text(c).strip() for c in re.findall(r"<code\b[^>]*>(.*?)</code>", prose_html, re.S)}
    for block in OUTPUT_BLOCK.findall(source):
        if TRUNCATED_CELL.search(block):
            found.append("a table in a cell output is cut with '...' (pass the columns it needs, or widen pandas' limits)")
        text = visible_text(block)
        if re.search(r"\*\*\S[^*\n]*\S\*\*", text):
            found.append(f"Markdown printed raw in a cell output: {text.strip()[:160]!r}")
        heads = "".join(re.findall(r"<thead\b.*?</thead>", block, re.S))   # column names, not row labels
        for header in set(RAW_HEADER.findall(heads)) - named_in_code:
            found.append(f"a table shows the raw column name {header!r} (show report.readable(table))")
    body = source.split('<article', 1)[-1]
    text = re.sub(r"<(pre|code)\b.*?</\1>", "", body, flags=re.S)
    for match in PLACEHOLDERS.finditer(visible_text(text)):
        found.append(f"placeholder or doubled word in the text: {match.group(0)!r}")
    prose = visible_text(GENERATED.sub("", re.sub(r"<table\b.*?</table>", "", OUTPUT_BLOCK.sub("", body), flags=re.S)))
    for match in TYPED_REFERENCE.finditer(prose):
        found.append(f"a reference typed as a number (use {{ref}} or {{numref}}): {match.group(0)!r}")
    # Python formats a missing number as "nan" ("NaN", pandas' and the prose's spelling, is meant).
    # A value a build did not measure (one seed's spread) is glued as words (report.number_text).
    for match in re.finditer(r"\bnan\b", prose):
        context = prose[max(0, match.start() - 60):match.end()]
        found.append(f"'nan' in the prose (a glued value that is not a number): {context!r}")
    return found


def test_static_checks_find_known_defects():
    """The checks above are not vacuous: each finds the defect it names."""
    bad = ('<article><span class="math notranslate nohighlight">\\(S_m\\) is the quantity each SAM step pushed '
           'down, and {glue:text}`ch09_rho:g` is\\(</span> see exercise Exercise 6 and git+&lt;repository URL&gt;'
           '<div class="cell_output docutils container"><div class="output"><table><tr><td>...</td></tr></table>'
           '</div></div><div class="cell_output docutils container"><div class="output"><pre>SAM is **ahead**</pre>'
           '</div></div><div class="cell_output docutils container"><div class="output"><table><tr>'
           '<thead><th>final_test_acc_mean</th></thead></tr></table></div></div>'
           ' as exercise 12 shows, a gain of nan points.</article>')
    found = "\n".join(static_defects(bad))
    for expected in ("inside math", "cut with", "Markdown printed raw", "'exercise Exercise'", "<repository URL>",
                     "raw column name 'final_test_acc_mean'", "typed as a number", "'nan' in the prose"):
        assert expected in found, (expected, found)
    good = ('<article><span class="math notranslate nohighlight">\\(\\hat\\epsilon = \\rho g\\)</span> Fine, see '
            '<a href="#ex">Exercise 12</a>.<p class="admonition-title">Exercise 3</p><code>n_nan = 1</code></article>')
    assert static_defects(good) == []


@pytest.mark.parametrize("path", page_paths())
def test_page_has_no_static_defects(path):
    defects = static_defects(page_html(path))
    assert not defects, f"{path}:\n" + "\n".join(defects)


JS_MAIN_TEXT = """() => {
    const main = document.querySelector('main article') || document.querySelector('main')
        || document.body;
    const clone = main.cloneNode(true);
    clone.querySelectorAll('pre, code, script, style, mjx-container, mjx-assistive-mml, .MathJax')
        .forEach(e => e.remove());
    return clone.textContent;
}"""

JS_WAIT_IMAGES = """async () => {
    const images = Array.from(document.images);
    images.forEach(img => { img.loading = 'eager'; });
    await Promise.all(images.map(img => img.complete ? null : new Promise(resolve => {
        img.addEventListener('load', resolve, {once: true});
        img.addEventListener('error', resolve, {once: true});
        setTimeout(resolve, 10000);
    })));
    return images.filter(img => !(img.complete && img.naturalWidth > 0))
                 .map(img => img.getAttribute('src'));
}"""

JS_MATHJAX = """async () => {
    if (!window.MathJax) return 'absent';
    if (!MathJax.startup || !MathJax.startup.promise) return 'not started';
    await MathJax.startup.promise;
    return 'done';
}"""

JS_OUTPUT_ERRORS = """() => {
    const found = [];
    document.querySelectorAll('.output.traceback, .output.error, .cell_output .traceback')
        .forEach(e => found.push('traceback: ' + e.textContent.trim().slice(0, 300)));
    document.querySelectorAll('.cell_output, .output').forEach(e => {
        const text = e.textContent;
        if (/Traceback \\(most recent call last\\)/.test(text))
            found.push('traceback in output: ' + text.trim().slice(0, 300));
    });
    document.querySelectorAll('.output.stderr, .stderr').forEach(e => {
        if (/Error|Traceback/.test(e.textContent))
            found.push('stderr: ' + e.textContent.trim().slice(0, 300));
    });
    return Array.from(new Set(found));
}"""


@pytest.mark.parametrize("path", page_paths())
def test_page(path, server, browser, link_cache):
    url = urljoin(server, path)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    external, js_errors = [], []
    origin = urlparse(server).netloc

    def route(route_):
        if urlparse(route_.request.url).netloc in (origin, ""):
            route_.continue_()
        else:
            external.append(route_.request.url)
            route_.abort()

    page.route("**/*", route)
    page.on("pageerror", lambda error: js_errors.append(str(error)))
    try:
        response = page.goto(url, wait_until="load")
        assert response is not None and response.status == 200, f"{path}: HTTP {response and response.status}"

        # Title: a non-empty <title> and one <h1>, whose text the <title> contains.
        title = page.title()
        h1 = page.locator("main h1").first
        assert h1.count() == 1, f"{path}: no <h1> in the main content"
        heading = h1.inner_text().strip().rstrip("#").strip()
        assert heading, f"{path}: empty <h1>"
        assert title and heading in title, f"{path}: title {title!r} does not name the page {heading!r}"

        # Outputs: no traceback, no error.
        errors = page.evaluate(JS_OUTPUT_ERRORS)
        assert not errors, f"{path}: error output in the page:\n" + "\n".join(errors)

        # Images: every <img> loaded.
        broken = page.evaluate(JS_WAIT_IMAGES)
        assert not broken, f"{path}: images that did not load: {broken}"

        # Math: MathJax finished, every math element typeset, no raw TeX left, no TeX error.
        n_math = page.locator("main .math").count()
        state = page.evaluate(JS_MATHJAX)
        if n_math:
            assert state == "done", f"{path}: {n_math} math elements but MathJax is {state}"
            page.wait_for_function(
                "() => Array.from(document.querySelectorAll('main .math'))"
                ".every(e => e.querySelector('mjx-container'))", timeout=MATHJAX_TIMEOUT_MS)
            n_typeset = page.locator("main mjx-container").count()
            assert n_typeset >= n_math, f"{path}: {n_math} math elements, {n_typeset} typeset"
            tex_errors = page.locator("main mjx-merror").all_inner_texts()
            assert not tex_errors, f"{path}: TeX errors: {tex_errors}"
        text = page.evaluate(JS_MAIN_TEXT)
        raw = sorted({m.group(0) for m in RAW_MATH.finditer(text)})
        assert not raw, f"{path}: untypeset math delimiters {raw} in the text"
        roles = sorted({m.group(0) for m in UNRENDERED_ROLE.finditer(text)})
        assert not roles, f"{path}: unrendered MyST roles {roles} in the text"

        # Internal links: every same-origin link answers 200 and its #anchor exists.
        hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
        bad = []
        for href in sorted(set(hrefs)):
            if urlparse(href).netloc != origin or not href.startswith(("http://", "https://")):
                continue
            target, fragment = urldefrag(href)
            status, ids = fetch(target, link_cache)
            if status != 200:
                bad.append(f"{href} -> HTTP {status}")
            elif fragment and target.endswith(".html") and fragment not in ids:
                bad.append(f"{href} -> no element with id {fragment!r}")
        assert not bad, f"{path}: broken internal links:\n" + "\n".join(bad)

        assert not external, f"{path}: the page fetched from outside the book (it must work offline): {external}"
        assert not js_errors, f"{path}: JavaScript errors: {js_errors}"
    finally:
        save_screenshots(page, path)
        page.close()


def save_screenshots(page, path: str) -> None:
    """The landing page as _build/screenshot-landing.png; the top of every page (pass or fail)
    under _build/screenshots/, to look at."""
    shots = SCREENSHOTS / "screenshots"
    try:
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shots / (path.replace("/", "__").removesuffix(".html") + ".png")))
        if path == page_paths()[0]:
            page.screenshot(path=str(SCREENSHOTS / "screenshot-landing.png"))
    except Exception as error:  # a screenshot is a by-product: never hide the real failure
        print(f"could not save a screenshot of {path}: {error}")


def main(argv: list[str]) -> int:
    if argv:
        os.environ["BOOK_HTML"] = str(Path(argv[0]).resolve())
    return pytest.main([__file__, "-q", "-p", "no:cacheprovider"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
