"""Opens a `lake dag FILE` page in headless Chromium (Debian's, through Playwright), clicks through it as a
person would and saves screenshots.

usage: dag_page.py PAGE SCREENSHOT_DIR MODEL
Prints one JSON object: what the page showed before and after clicking MODEL and after searching.
"""
import json
import sys

from playwright.sync_api import sync_playwright

page_path, shots, model = sys.argv[1], sys.argv[2], sys.argv[3]
args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=args)
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto("file://" + page_path)
    page.screenshot(path=f"{shots}/dag-overview.png")
    nodes = page.eval_on_selector_all("g.node", "gs => gs.map(g => g.dataset.name)")
    page.click(f'g.node[data-name="{model}"]')
    classes = page.eval_on_selector_all("g.node", "gs => Object.fromEntries(gs.map(g => [g.dataset.name, g.getAttribute('class')]))")
    details = page.inner_text("#details")
    page.screenshot(path=f"{shots}/dag-selected.png")
    # The side panel's links select too.
    page.click("#details a >> nth=0")
    after_link = page.inner_text("#details h2")
    page.fill("#search", "view")
    matches = page.eval_on_selector_all("g.node.match", "gs => gs.map(g => g.dataset.name)")
    page.press("#search", "Enter")
    searched = page.inner_text("#details h2")
    page.screenshot(path=f"{shots}/dag-search.png")
    # A link to a model opens with it selected.
    page.goto("file://" + page_path + "#model=" + model)
    linked = page.inner_text("#details h2")
    browser.close()
print(json.dumps({
    "nodes": nodes, "classes": classes, "details": details, "after_link": after_link, "matches": matches,
    "searched": searched, "linked": linked, "errors": errors,
    "elsewhere": [u for u in requests if not u.startswith("file://")],
}))
