"""The built pages for a reader with a screen reader or a keyboard, and the Devanagari digits.

Beside ``tests/test_browser.py`` and on its Chromium and test build (``BNBOOK_SITE`` checks an
existing build instead), every page named in ``_toc.yml`` is checked at 1280 and 390 px:

* axe-core (the accessibility engine of browsers' developer tools; vendored from its npm
  package by ``tools/vendor_js.py`` into ``_build/test-vendor/``, injected here, never served
  with the book) finds no critical or serious violation outside ``tests/a11y_allowlist.json``
  (theme markup that the book's templates cannot override cleanly, each with its reason);
* every image in the article has an alternative text of at least five words, with no path or
  file extension, unique on its page (shown or held by an interactive figure's frames);
* every slider of an interactive figure has an accessible name, takes the keyboard focus and
  moves with the arrow keys, changing the figure;
* the Devanagari digits of chapter 05 (Figure 5.1's caption, the class-count table) are drawn
  with the Noto Sans Devanagari subset the site serves (``_theme/book.css``), as the DevTools
  protocol's ``CSS.getPlatformFontsForNode`` reports.

Every violation axe reports (all impacts) is written to ``axe.json`` beside the screenshots.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import ROOT, toc_files
from test_browser import LAPTOP, PHONE, browser, open_page, pytestmark, shots, site  # noqa: F401

sys.path.insert(0, str(ROOT / "tools"))
from vendor_js import vendor_test_tools  # noqa: E402

ALLOWLIST = ROOT / "tests" / "a11y_allowlist.json"
#: Impacts that fail the test (axe's scale: minor, moderate, serious, critical).
FAILING = ("critical", "serious")
MIN_ALT_WORDS = 5
#: An alternative text that names a file: a path separator or a file extension.
FILE_LIKE = re.compile(r"[/\\]|\.(png|jpe?g|gif|svg|webp|pdf)\b", re.I)
DEVANAGARI_DIGITS = "०१२३४५६७८९"
DEVANAGARI_FONT = "Noto Sans Devanagari"


def allowlist() -> list[dict]:
    """The checked-in exceptions: rule, selector (CSS), reason, issue (or null)."""
    entries = json.loads(ALLOWLIST.read_text())["entries"]
    for entry in entries:
        assert entry.get("rule") and entry.get("selector") and entry.get("reason"), entry
    return entries


_AXE_RUN = """
const [allowed, done] = [arguments[0], arguments[arguments.length - 1]];
axe.run(document, {resultTypes: ['violations']}).then(results => done({
  version: axe.version,
  violations: results.violations.map(v => ({
    rule: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.map(n => {
      const element = document.querySelector(n.target[0]);
      const entry = allowed.find(a => a.rule === v.id && element && element.matches(a.selector));
      return {target: n.target.join(' '), html: n.html.slice(0, 160), impact: n.impact,
              allowed: entry ? entry.selector : null};
    }),
  })),
})).catch(error => done({error: String(error)}));
"""

_results: dict[tuple[str, int], dict] = {}


@pytest.fixture(scope="module")
def axe(browser, site, shots):  # noqa: F811
    """page, (width, height) -> axe's violations on that page at that window size (cached)."""
    source = vendor_test_tools().read_text(encoding="utf-8")
    allowed = allowlist()

    def run(page: str, size: tuple[int, int]) -> dict:
        key = (page, size[0])
        if key not in _results:
            open_page(browser, site, page, size)
            browser.set_script_timeout(120)
            browser.execute_script(source)
            result = browser.execute_async_script(_AXE_RUN, allowed)
            assert "error" not in result, f"{page}: axe failed: {result['error']}"
            _results[key] = result
        return _results[key]

    yield run
    report = {f"{page} @ {width}px": r for (page, width), r in sorted(_results.items())}
    (shots / "axe.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
    (shots / "axe-summary.txt").write_text(summary(_results))


def summary(results: dict[tuple[str, int], dict]) -> str:
    """Violating elements per rule and impact, per width, all pages together (for the notes)."""
    lines = []
    for width in sorted({w for _, w in results}, reverse=True):
        counts: Counter = Counter()
        for (page, w), result in results.items():
            if w != width:
                continue
            for violation in result["violations"]:
                for node in violation["nodes"]:
                    state = "allowlisted" if node["allowed"] else "open"
                    counts[(violation["impact"], violation["rule"], state)] += 1
        version = next(iter(results.values()))["version"]
        pages = sum(w == width for _, w in results)
        lines.append(f"axe-core {version} at {width} px, {pages} pages:")
        order = {"critical": 0, "serious": 1, "moderate": 2, "minor": 3}
        for (impact, rule, state), n in sorted(counts.items(),
                                               key=lambda i: (order[i[0][0]], i[0][1])):
            lines.append(f"  {impact:<9} {rule:<32} {n:>4} {state}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("width", [LAPTOP, PHONE], ids=["1280px", "390px"])
@pytest.mark.parametrize("page", toc_files())
def test_no_serious_accessibility_violation(axe, page, width):
    result = axe(page, width)
    problems = [
        f"{v['rule']} ({v['impact']}): {node['target']} {node['html']!r}"
        for v in result["violations"] if v["impact"] in FAILING
        for node in v["nodes"] if not node["allowed"]
    ]
    assert not problems, (f"{page} at {width[0]} px, axe-core {result['version']}: "
                          f"{len(problems)} violations:\n" + "\n".join(problems[:20]))


def test_every_allowlist_entry_is_still_needed(axe):
    """An exception that no page needs any more is removed, so the list stays honest."""
    pages = toc_files()
    for page in pages:
        for width in (LAPTOP, PHONE):
            axe(page, width)
    used = {(v["rule"], node["allowed"]) for result in _results.values()
            for v in result["violations"] for node in v["nodes"] if node["allowed"]}
    unused = [e for e in allowlist() if (e["rule"], e["selector"]) not in used]
    assert not unused, f"allowlist entries no page needs: {unused}"


_IMAGES = """
const article = document.querySelector('article.bd-article');
const shown = [...article.querySelectorAll('img')].map(i => ({
  alt: i.getAttribute('alt'), src: (i.getAttribute('src') || '').slice(0, 80)}));
return shown;
"""


def alt_problems(images: list[dict]) -> list[str]:
    """What is wrong with each image's alternative text (empty list: all good)."""
    problems = []
    seen = Counter((image["alt"] or "").strip() for image in images)
    for image in images:
        alt = (image["alt"] or "").strip()
        if not alt:
            problems.append(f"{image['src']}: no alternative text")
        elif FILE_LIKE.search(alt):
            problems.append(f"{image['src']}: alternative text names a file: {alt!r}")
        elif len(alt.split()) < MIN_ALT_WORDS:
            problems.append(f"{image['src']}: under {MIN_ALT_WORDS} words: {alt!r}")
        elif seen[alt] > 1:
            problems.append(f"{image['src']}: alternative text repeated on the page: {alt!r}")
    return problems


@pytest.mark.parametrize("page", toc_files())
def test_every_image_has_a_describing_alternative_text(browser, site, page):  # noqa: F811
    open_page(browser, site, page)
    images = browser.execute_script(_IMAGES)
    problems = alt_problems(images)
    assert not problems, f"{page}: " + "\n".join(problems)


def test_alt_check_catches_each_kind_of_bad_text():
    good = "Line chart of test accuracy per epoch"
    assert alt_problems([{"alt": good, "src": "a"}]) == []
    bad = [None, "", "../_images/439a.png", "Figure for x", "plot of f.png and more words"]
    for alt in bad:
        assert alt_problems([{"alt": alt, "src": "a"}]), alt
    assert len(alt_problems([{"alt": good, "src": "a"}, {"alt": good, "src": "b"}])) == 2


_SLIDERS = """
return [...document.querySelectorAll('.widget-slider [role=slider]')];
"""


def test_every_slider_has_a_name_and_moves_with_the_arrow_keys(browser, site):  # noqa: F811
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    pages = [p for p in toc_files() if "interactive_figure(" in (ROOT / f"{p}.md").read_text()]
    if not pages:
        pytest.skip("no page in the toc draws an interactive_figure")
    checked = 0
    for page in pages:
        open_page(browser, site, page)
        sliders = browser.execute_script(_SLIDERS)
        assert sliders, f"{page} draws an interactive figure but shows no slider"
        for slider in sliders:
            name = browser.execute_cdp_cmd(
                "Accessibility.getPartialAXTree",
                {"backendNodeId": backend_node_id(browser, slider), "fetchRelatives": False},
            )["nodes"][0].get("name", {}).get("value", "")
            assert len(name.split()) >= 2, f"{page}: a slider has no accessible name ({name!r})"
            browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", slider)
            browser.execute_script("arguments[0].focus()", slider)
            assert browser.switch_to.active_element == slider, f"{page}: {name!r} takes no focus"
            assert int(slider.get_attribute("tabindex") or -1) >= 0, f"{page}: {name!r} untabbable"
            figure = figure_of(browser, slider)
            start, frame = slider.get_attribute("aria-valuenow"), frame_html(browser, figure)
            ActionChains(browser).send_keys(Keys.ARROW_RIGHT).perform()
            time.sleep(0.4)
            moved = slider.get_attribute("aria-valuenow")
            if moved == start:  # the slider starts at its last value: go the other way
                ActionChains(browser).send_keys(Keys.ARROW_LEFT).perform()
                time.sleep(0.4)
                moved = slider.get_attribute("aria-valuenow")
            assert moved != start, f"{page}: the arrow keys do not move slider {name!r}"
            assert frame_html(browser, figure) != frame, f"{page}: {name!r} left the figure as is"
            checked += 1
    assert checked


def backend_node_id(browser, element) -> int:  # noqa: F811
    """The DevTools protocol's id of a selenium element (for the Accessibility and CSS domains)."""
    browser.execute_script("window.__bnNode = arguments[0]", element)
    remote = browser.execute_cdp_cmd("Runtime.evaluate", {"expression": "window.__bnNode"})
    node = browser.execute_cdp_cmd("DOM.describeNode", {"objectId": remote["result"]["objectId"]})
    return node["node"]["backendNodeId"]


def figure_of(browser, slider):  # noqa: F811
    """The interactive figure (the widget box around all its sliders and frames) of a slider."""
    return browser.execute_script(
        "let box = arguments[0].closest('.widget-slider').parentElement;"
        "while (box && !box.querySelector('img')) box = box.parentElement; return box;", slider)


def frame_html(browser, figure) -> str:  # noqa: F811
    return browser.execute_script(
        "return [...arguments[0].querySelectorAll('img')].filter(i => i.offsetParent !== null)"
        ".map(i => i.getAttribute('src')).join()", figure)


# --- The Devanagari digits --------------------------------------------------------------------

def fonts_drawing(browser, element) -> list[dict]:  # noqa: F811
    """``CSS.getPlatformFontsForNode`` for the text of ``element``: family, custom, glyph count."""
    browser.execute_cdp_cmd("DOM.getDocument", {"depth": -1})
    node = browser.execute_cdp_cmd("DOM.pushNodesByBackendIdsToFrontend",
                                   {"backendNodeIds": [backend_node_id(browser, element)]})
    fonts = browser.execute_cdp_cmd("CSS.getPlatformFontsForNode", {"nodeId": node["nodeIds"][0]})
    return fonts["fonts"]


_DIGIT_SPANS = """
// Wrap each run of Devanagari digits under the given element in a span of its own, so the
// fonts asked for are those of the digits alone; returns the spans.
const [root, digits] = arguments;
const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
const texts = [];
while (walker.nextNode()) if ([...walker.currentNode.data].some(c => digits.includes(c)))
  texts.push(walker.currentNode);
const spans = [];
for (const text of texts) {
  const parts = text.data.split(/([०-९]+)/);
  const fragment = document.createDocumentFragment();
  for (const part of parts) {
    if (!part) continue;
    if (/^[०-९]+$/.test(part)) {
      const span = document.createElement('span');
      span.textContent = part; fragment.appendChild(span); spans.push(span);
    } else fragment.appendChild(document.createTextNode(part));
  }
  text.replaceWith(fragment);
}
return spans;
"""


@pytest.mark.parametrize("size", [LAPTOP, PHONE], ids=["1280px", "390px"])
def test_devanagari_digits_are_drawn_with_the_served_font(browser, site, size):  # noqa: F811
    page = next((p for p in toc_files() if p.endswith("05_hindi_digits")), None)
    if page is None:
        pytest.skip("chapter 05 is not in the toc")
    open_page(browser, site, page, size)
    browser.execute_cdp_cmd("DOM.enable", {})
    browser.execute_cdp_cmd("CSS.enable", {})
    places = browser.execute_script(
        "const caption = document.querySelector('#fig-hindi-digits figcaption');"
        "const table = [...document.querySelectorAll('article table')]"
        "  .find(t => /[०-९]/.test(t.textContent));"
        "return [caption, table];")
    for where, element in zip(("Figure 5.1's caption", "a table"), places):
        assert element is not None, f"{page}: {where} with Devanagari digits not found"
        browser.execute_script("arguments[0].scrollIntoView()", element)
        spans = browser.execute_script(_DIGIT_SPANS, element, DEVANAGARI_DIGITS)
        assert spans, f"{page}: {where} holds no Devanagari digit"
        browser.execute_script("return document.fonts.ready")
        for span in spans:
            fonts = fonts_drawing(browser, span)
            assert fonts, f"{page}: no font drew {span.text!r} in {where}"
            wrong = [f for f in fonts
                     if not (f["familyName"] == DEVANAGARI_FONT and f["isCustomFont"])]
            assert not wrong, (f"{page} at {size[0]} px: {span.text!r} in {where} drawn with "
                               f"{fonts}, not the served {DEVANAGARI_FONT}")
