"""What the browser scripts share: Debian's headless Chromium through Selenium (its own
chromedriver: nothing is downloaded), and printing what was seen as one JSON line."""

import json
import sys

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait


def chromium(width, height):
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def waiter(driver):
    # Elements are found again on every try: a page that reloads leaves stale ones behind.
    return WebDriverWait(driver, 20, ignored_exceptions=[StaleElementReferenceException])


def run(steps, width, height):
    """Runs steps(driver, seen); prints `seen` (with the error and the page when a step
    failed, then exits 1)."""
    driver = chromium(width, height)
    seen = {}
    try:
        steps(driver, seen)
    except Exception as e:  # the test prints what was seen so far
        seen["error"] = repr(e)
        seen["page"] = driver.page_source[:3000]
        print(json.dumps(seen), flush=True)
        sys.exit(1)
    finally:
        driver.quit()
    print(json.dumps(seen), flush=True)
