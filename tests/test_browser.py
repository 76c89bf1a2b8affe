"""The built pages in a real browser, with the network off, opened straight from disk.

Headless Chromium (Debian's ``chromium`` and ``chromium-driver``; ``make test`` installs them
when missing) loads every page of the test build and checks what a reader would see: math
rendered by the vendored MathJax, no broken image, sliders over precomputed frames that change
the figure when moved, launch links on every chapter, and reading comfort at a laptop's window
(1280x900) and a phone's (390x900):

* no code cell or printed output scrolls sideways at 1280 px (``scrollWidth > clientWidth`` of
  every ``pre`` and output block in the article);
* every figure is shown at least 90% of the article's width, or at its natural size if smaller;
* the smallest text of every figure is at least 9 px on screen at 1280 px: ``bnlib.plots.style``
  records, in each PNG it writes, the smallest font size the figure holds (points); with the
  PNG's own DPI that is ``points * dpi / 72`` pixels at natural size, times the displayed width
  over the natural width; figure backgrounds are opaque (readable in dark mode);
* the page itself never scrolls sideways at 390 px.

Screenshots of each page at both widths, and the measurements (``layout.json``), are left in
``_build/test-book/screenshots/``. To check an existing build instead of building the book,
set ``BNBOOK_SITE=/path/to/_build/html`` (screenshots then go to ``BNBOOK_SCREENSHOTS`` or
``<site>/../screenshots``).
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from conftest import OUTPUT, ROOT, executed_pages, toc_files

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER) and not os.environ.get("CI"),
    reason="Debian's chromium and chromium-driver are not installed (make test installs them)",
)


LAPTOP = (1280, 900)
PHONE = (390, 900)
#: Smallest text allowed in a figure, in CSS pixels at the laptop width.
SMALLEST_TEXT_PX = 9.0
#: A figure narrower than this share of the article must be shown at its natural size.
FIGURE_SHARE = 0.9
#: PNG text key written by bnlib.plots.style.figure_png (kept literal: the test reads the site).
SMALLEST_TEXT_KEY = "bnlib smallest text pt"


@pytest.fixture(scope="module")
def site(request) -> Path:
    """The built HTML folder: ``$BNBOOK_SITE`` if set, else the session's test build."""
    given = os.environ.get("BNBOOK_SITE")
    if given:
        return Path(given).resolve()
    return request.getfixturevalue("built_book")


@pytest.fixture(scope="module")
def shots(site) -> Path:
    default = site.parent.parent if os.environ.get("BNBOOK_SITE") else OUTPUT
    folder = Path(os.environ.get("BNBOOK_SCREENSHOTS") or default / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser(site):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert CHROMIUM and CHROMEDRIVER, "chromium / chromedriver missing: apt-get install chromium chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        # The network is off: every host name fails to resolve, so nothing can come from a CDN.
        "--host-resolver-rules=MAP * ~NOTFOUND", f"--window-size={LAPTOP[0]},{LAPTOP[1]}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def open_page(browser, site: Path, page: str, size: tuple[int, int] = LAPTOP) -> None:
    if tuple(browser.get_window_size().values()) != size:
        browser.set_window_size(*size)
    browser.get((site / f"{page}.html").as_uri())
    # Wait for MathJax to finish typesetting and widgets to render (both are asynchronous).
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        pending = browser.execute_script(
            "const math = document.querySelectorAll('.math').length;"
            "const done = document.querySelectorAll('.math mjx-container').length;"
            "const views = document.querySelectorAll("
            "  'script[type=\"application/vnd.jupyter.widget-view+json\"]').length;"
            "const widgets = document.querySelectorAll('.jupyter-widgets').length;"
            "return (math > done) || (views > 0 && widgets === 0);"
        )
        if not pending:
            return
        time.sleep(0.25)


@pytest.mark.parametrize("page", toc_files())
def test_page_renders_offline(browser, site, shots, page):
    open_page(browser, site, page)
    browser.save_screenshot(str(shots / f"{page.replace('/', '_')}.png"))

    math = browser.execute_script("return document.querySelectorAll('.math').length")
    unrendered = browser.execute_script(
        "return [...document.querySelectorAll('.math')]"
        ".filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 60))"
    )
    assert not unrendered, f"{page}: {len(unrendered)} of {math} formulas not rendered: {unrendered[:3]}"

    broken = browser.execute_script(
        "return [...document.images].filter(i => !i.complete || i.naturalWidth === 0)"
        ".map(i => i.getAttribute('src'))"
    )
    assert not broken, f"{page}: broken images {broken}"


@pytest.mark.parametrize("page", executed_pages())
def test_chapter_has_launch_links(browser, site, page):
    open_page(browser, site, page)
    links = browser.execute_script(
        "return [...document.querySelectorAll('.dropdown-launch-buttons a')].map(a => a.href)"
    )
    assert any("mybinder.org" in link and page in link for link in links), links


def visible_frame(browser, stack) -> str:
    """The HTML of the child of a widget Stack that is displayed."""
    return browser.execute_script(
        "return [...arguments[0].children].filter(c => c.offsetParent !== null)"
        ".map(c => c.innerHTML).join('')",
        stack,
    )


def test_precomputed_sliders_respond_without_a_kernel(browser, site):
    """Every slider that drives a Stack of precomputed frames changes the visible frame."""
    from selenium.webdriver.common.keys import Keys

    pages = [p for p in executed_pages() if "interactive_figure(" in (ROOT / f"{p}.md").read_text()]
    checked = 0
    for page in pages:
        open_page(browser, site, page)
        pairs = browser.execute_script(
            # html-manager renders an ipywidgets Stack as a plain .widget-box (not an hbox or
            # vbox) holding only its selected frame, swapped when the index changes.
            "const isStack = b => b.matches('.widget-box:not(.widget-vbox):not(.widget-hbox)');"
            "return [...document.querySelectorAll('.widget-box')].filter(isStack)"
            ".filter(stack => ![...document.querySelectorAll('.widget-box')]"
            "  .some(other => other !== stack && isStack(other) && other.contains(stack)))"
            ".map(stack => {"
            "  let box = stack.parentElement;"
            "  while (box && !box.querySelector('.widget-slider')) box = box.parentElement;"
            "  return box ? [box.querySelector('.widget-slider [role=slider]'), stack] : null;"
            "}).filter(Boolean)"
        )
        assert pairs, f"{page} uses bnlib.widgets but shows no slider over precomputed frames"
        for slider, stack in pairs:
            browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", slider)
            before = visible_frame(browser, stack)
            assert before, f"{page}: a precomputed figure shows no frame"
            slider.click()
            slider.send_keys(Keys.END)
            time.sleep(0.5)
            after = visible_frame(browser, stack)
            assert after and after != before, f"{page}: moving the slider did not change the figure"
            checked += 1
    if not pages:
        pytest.skip("no chapter in the toc draws an interactive_figure yet")


# --- Reading comfort: measured once per page and width, asserted by the tests below ---------

_MEASURE = """
const article = document.querySelector('article.bd-article');
const style = getComputedStyle(article);
const articleWidth = article.clientWidth - parseFloat(style.paddingLeft)
    - parseFloat(style.paddingRight);
const blocks = [...article.querySelectorAll(
    'pre, div.cell_output > .output:not(:has(pre)), div.cell_output table')]
  .filter(e => e.offsetParent !== null && !e.closest('.jupyter-widgets'));
const overflowing = blocks.filter(e => e.scrollWidth > e.clientWidth + 1).map(e => ({
  kind: e.closest('.cell_input') ? 'code' : (e.closest('.cell_output') ? 'output' : 'block'),
  hidden: e.scrollWidth - e.clientWidth,
  line: e.textContent.split('\\n')
    .reduce((a, b) => b.length > a.length ? b : a, '').slice(0, 100),
}));
const images = [...article.querySelectorAll('img')]
  .filter(i => i.offsetParent !== null && i.naturalWidth > 0)
  .map(i => ({src: i.currentSrc || i.src, natural: i.naturalWidth,
              shown: i.getBoundingClientRect().width}));
const root = document.documentElement;
return {articleWidth, blocks: blocks.length, overflowing, images,
        pageScrolls: root.scrollWidth > root.clientWidth,
        pageWidth: root.scrollWidth, windowWidth: root.clientWidth};
"""

_measured: dict[tuple[str, int], dict] = {}


@pytest.fixture(scope="module")
def measure(browser, site, shots):
    """page, (width, height) -> the layout measured on that page at that window size (cached)."""

    def get(page: str, size: tuple[int, int]) -> dict:
        key = (page, size[0])
        if key not in _measured:
            open_page(browser, site, page, size)
            name = f"{page.replace('/', '_')}-{size[0]}"
            browser.save_screenshot(str(shots / f"{name}.png"))
            _measured[key] = browser.execute_script(_MEASURE)
            # and where the first figure is in view, to see it as a reader does
            if browser.execute_script(
                "const i = [...document.querySelectorAll('article.bd-article img')]"
                "  .find(i => i.offsetParent !== null);"
                "if (i) i.scrollIntoView({block: 'start'}); return Boolean(i);"
            ):
                time.sleep(0.3)
                browser.save_screenshot(str(shots / f"{name}-figure.png"))
        return _measured[key]

    yield get
    report = {f"{page} @ {width}px": m for (page, width), m in sorted(_measured.items())}
    (shots / "layout.json").write_text(json.dumps(report, indent=1))


def png_bytes(src: str) -> bytes:
    """The bytes of an image shown from a data: URI or a file of the site."""
    if src.startswith("data:"):
        return base64.b64decode(src.split(",", 1)[1])
    return Path(unquote(urlparse(src).path)).read_bytes()


def png_facts(data: bytes) -> tuple[float | None, float, bool]:
    """(smallest text in points recorded by bnlib, dots per inch, opaque top-left pixel)."""
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    image.load()
    points = image.text.get(SMALLEST_TEXT_KEY) if hasattr(image, "text") else None
    dpi = float(image.info.get("dpi", (72.0, 72.0))[0])
    pixel = image.convert("RGBA").getpixel((0, 0))
    return (float(points) if points else None), dpi, pixel[3] == 255


@pytest.mark.parametrize("page", toc_files())
def test_no_code_or_output_scrolls_sideways_at_1280(measure, page):
    m = measure(page, LAPTOP)
    assert not m["overflowing"], (
        f"{page}: {len(m['overflowing'])} of {m['blocks']} code/output blocks scroll sideways in "
        f"an article {m['articleWidth']:.0f} px wide; widest lines: "
        + "; ".join(f"[{o['kind']} +{o['hidden']}px] {o['line']!r}" for o in m["overflowing"][:4])
    )


@pytest.mark.parametrize("page", toc_files())
def test_figures_fill_the_column_or_show_at_natural_size(measure, page):
    m = measure(page, LAPTOP)
    small = [
        f"{Path(i['src'][:80]).name}: {i['shown']:.0f} px of {i['natural']} natural"
        for i in m["images"]
        if i["shown"] + 1 < min(FIGURE_SHARE * m["articleWidth"], i["natural"])
    ]
    assert not small, f"{page}: figures shrunk in a {m['articleWidth']:.0f} px article: {small}"


@pytest.mark.parametrize("page", toc_files())
def test_figure_text_is_at_least_9px_and_backgrounds_opaque_at_1280(measure, page):
    m = measure(page, LAPTOP)
    problems = []
    for image in m["images"]:
        name = "data:" if image["src"].startswith("data:") else Path(image["src"]).name
        points, dpi, opaque = png_facts(png_bytes(image["src"]))
        if points is None:
            problems.append(f"{name}: no text size recorded (draw it with bnlib.plots)")
            continue
        if points != points:  # nan: a figure without text
            continue
        pixels = points * dpi / 72 * image["shown"] / image["natural"]
        image["smallest_text_px"] = round(pixels, 1)
        if pixels < SMALLEST_TEXT_PX:
            problems.append(f"{name}: {points:g} pt at {dpi:g} dpi shown at {image['shown']:.0f}/"
                            f"{image['natural']} px = {pixels:.1f} px")
        if not opaque:
            problems.append(f"{name}: transparent background (unreadable in dark mode)")
    assert not problems, f"{page}: {problems}"


@pytest.mark.parametrize("page", toc_files())
def test_page_does_not_scroll_sideways_on_a_phone(measure, page):
    m = measure(page, PHONE)
    assert not m["pageScrolls"], (
        f"{page}: the page is {m['pageWidth']} px wide in a {m['windowWidth']} px window")
