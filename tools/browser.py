"""visualize's page in a real browser: headless Chromium from the system's packages, driven by
Playwright, with nothing leaving the machine. Used by the page's tests and its benchmark.

  with browser.opened("page.html") as (page, requests, errors):
    page.evaluate("window.charrnn.generate('ROMEO:', 100, 0)")

Never a downloaded browser: Debian's `chromium` (apt-get install chromium); Playwright from pip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from typing import Iterator

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Nothing leaves the machine: no background services, and every host name resolves to nothing
# (the page's requests are also blocked and recorded, below). Playwright starts each browser
# with a fresh temporary profile of its own (it refuses --user-data-dir here).
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND"]


def missing() -> str:
  """What is missing to drive the browser, in words ("" when nothing is)."""
  try:
    import playwright.sync_api  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    return "playwright is not installed (pip install playwright)"
  if not os.path.exists(CHROMIUM):
    return "Chromium is not installed (apt-get install chromium)"
  return ""


@contextlib.contextmanager
def opened(page_path: str, viewport=(1200, 1000)) -> Iterator[tuple]:
  """(page, requests, errors): the page opened from the file system (loaded), every non-file
  request blocked and recorded in `requests`, script errors and console errors in `errors`."""
  from playwright.sync_api import sync_playwright  # pylint: disable=g-import-not-at-top
  requests, errors = [], []

  def route(r):
    if r.request.url.startswith(("file:", "data:")):
      r.continue_()
    else:
      requests.append(r.request.url)
      r.abort()

  with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    try:
      page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
      page.route("**/*", route)
      page.on("request", lambda r: None if r.url.startswith(("file:", "data:"))
              else requests.append(r.url))
      page.on("pageerror", lambda e: errors.append(str(e)))
      page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
      page.goto("file://" + os.path.abspath(page_path), wait_until="load")
      yield page, requests, errors
    finally:
      browser.close()
