"""Looks at a running shotflow dashboard in real headless Chromium (Debian's `chromium`,
driven by Playwright) and checks what a person would see.

usage: check_dashboard.py URL SCREENSHOT.png

- the page loads with no console error and no failed request;
- the dataflow graph is drawn (an SVG image with the run's operators, loaded and non-empty);
- the events count advances between two looks 2.5 s apart, and matches what /api/state says
  at the time (driven by the run's data, not by a timer in the page);
- the result plots the demo publishes ("pump-probe", "photons per shot") are shown and loaded;
- the progress bar, the per-worker table and the operator table are filled;
- a screenshot is saved.

Prints one JSON line with what it compared; exits non-zero on the first failed check.
"""
import json
import shutil
import sys
import time
import urllib.request

from playwright.sync_api import sync_playwright


def fail(message):
    print(f"check_dashboard: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def state(url):
    with urllib.request.urlopen(url + "/api/state", timeout=5) as r:
        return json.load(r)


def main():
    url, screenshot = sys.argv[1].rstrip("/"), sys.argv[2]
    browser_path = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser_path is None:
        fail("no chromium on PATH (Debian package `chromium`)")
    errors, failed = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=browser_path,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("requestfailed", lambda r: failed.append(r.url))
        page.on(
            "response",
            lambda r: failed.append(f"{r.url} {r.status}") if r.status >= 400 else None,
        )
        page.goto(url + "/", wait_until="load", timeout=20_000)

        # The first look: numbers filled from the run's state.
        page.wait_for_function(
            "document.getElementById('events').dataset.value !== undefined", timeout=10_000
        )
        first = int(page.eval_on_selector("#events", "e => e.dataset.value"))
        first_api = state(url)["progress"]["events"]
        time.sleep(2.5)
        page.wait_for_function(
            f"Number(document.getElementById('events').dataset.value) > {first}", timeout=10_000
        )
        second = int(page.eval_on_selector("#events", "e => e.dataset.value"))
        api = state(url)
        if api["progress"]["complete"]:
            fail("the run ended before the second look: pace it slower")
        if not second > first:
            fail(f"events did not advance: {first} then {second}")
        # The page shows what the run reported, not a number of its own making.
        if not (first_api <= second <= api["progress"]["events"]):
            fail(f"page shows {second} events, the run said {first_api}..{api['progress']['events']}")

        # The graph: an SVG image naming the run's operators, loaded with a real size.
        page.wait_for_function(
            "(() => { const g = document.getElementById('graph'); return g.complete && g.naturalWidth > 0; })()",
            timeout=10_000,
        )
        graph_src = page.eval_on_selector("#graph", "e => e.src")
        with urllib.request.urlopen(graph_src, timeout=5) as r:
            svg = r.read().decode()
        operators = [o["name"] for o in api["operators"]]
        for name in ("Synthetic", "PumpProbe"):
            if name not in operators:
                fail(f"operator {name} not in the state's operators {operators}")
            if name not in svg:
                fail(f"operator {name} not drawn in the graph")

        # The published plots, loaded as images.
        page.wait_for_function(
            "document.querySelectorAll('#plots figure img').length >= 2 && "
            "[...document.querySelectorAll('#plots figure img')].every(i => i.complete && i.naturalWidth > 0)",
            timeout=10_000,
        )
        captions = page.eval_on_selector_all("#plots figcaption", "es => es.map(e => e.textContent)")
        for name in ("pump-probe", "photons per shot"):
            if name not in captions:
                fail(f"plot {name!r} not shown (shown: {captions})")

        bar = page.eval_on_selector("#bar", "e => parseFloat(e.style.width)")
        if not 0 < bar <= 100:
            fail(f"the progress bar is at {bar}%")
        workers = page.eval_on_selector_all("#workers tbody tr", "rs => rs.length")
        if workers != api["progress"]["workers"] or workers < 1:
            fail(f"{workers} worker rows for {api['progress']['workers']} workers")
        operator_rows = page.eval_on_selector_all("#operators tbody tr", "rs => rs.length")
        if operator_rows != len(operators):
            fail(f"{operator_rows} operator rows for {len(operators)} operators")

        page.screenshot(path=screenshot, full_page=True)
        browser.close()
    if errors:
        fail(f"console errors: {errors}")
    if failed:
        fail(f"failed requests: {failed}")
    print(json.dumps({
        "looks": 2,
        "events_first": first,
        "events_second": second,
        "operators": len(operators),
        "workers": workers,
        "plots": captions,
        "screenshot": screenshot,
    }))


main()
