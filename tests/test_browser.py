"""The built pages in a real browser, with the network off, opened straight from disk.

Headless Chromium (Debian's ``chromium`` and ``chromium-driver``; ``make test`` installs them
when missing) loads every page of the test build and checks what a reader would see: math
rendered by the vendored MathJax, no broken image, sliders over precomputed frames that change
the figure when moved, and launch links on every chapter. A screenshot of each page is left in
``_build/test-book/screenshots/``.
"""

from __future__ import annotations

import os
import shutil
import time

import pytest
from conftest import HTML, OUTPUT, ROOT, executed_pages, toc_files

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER) and not os.environ.get("CI"),
    reason="Debian's chromium and chromium-driver are not installed (make test installs them)",
)


@pytest.fixture(scope="module")
def browser(built_book):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert CHROMIUM and CHROMEDRIVER, "chromium / chromedriver missing: apt-get install chromium chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        # The network is off: every host name fails to resolve, so nothing can come from a CDN.
        "--host-resolver-rules=MAP * ~NOTFOUND", "--window-size=1200,1600",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def open_page(browser, page: str) -> None:
    browser.get((HTML / f"{page}.html").as_uri())
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
def test_page_renders_offline(browser, page):
    open_page(browser, page)
    shots = OUTPUT / "screenshots"
    shots.mkdir(exist_ok=True)
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
def test_chapter_has_launch_links(browser, page):
    open_page(browser, page)
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


def test_precomputed_sliders_respond_without_a_kernel(browser):
    """Every slider that drives a Stack of precomputed frames changes the visible frame."""
    from selenium.webdriver.common.keys import Keys

    pages = [p for p in executed_pages() if "interactive_figure(" in (ROOT / f"{p}.md").read_text()]
    checked = 0
    for page in pages:
        open_page(browser, page)
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
