"""Uses a member page session in a real headless Chromium, for tests/member_page.rs: the
session cookie is handed over (the member logged in while Cobot answered), then the page is
opened and a door pressed, whatever Cobot says now; after WAIT seconds the page is loaded
again, to see whether the session still holds.

Usage: member_session_browser.py BASE_URL COOKIE_VALUE UNIT WAIT_SECONDS
"""

import sys
import time

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec

from browser import run, waiter


def main():
    base, cookie, unit, wait_seconds = sys.argv[1:5]

    def steps(driver, seen):
        wait = waiter(driver)
        # A cookie is set for the site being shown: first any page of it.
        driver.get(base + "/m/manifest.webmanifest")
        driver.add_cookie({"name": "portier_member", "value": cookie, "path": "/"})
        driver.get(base + "/m/")
        wait.until(ec.element_to_be_clickable(
            (By.CSS_SELECTOR, f'button[data-unit="{unit}"]'))).click()
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "[role=status]").text.endswith(".")
                   and "Opening" not in d.find_element(By.CSS_SELECTOR, "[role=status]").text)
        seen["opened"] = driver.find_element(By.CSS_SELECTOR, "[role=status]").text
        time.sleep(float(wait_seconds))
        driver.get(base + "/m/")
        wait.until(lambda d: d.find_elements(By.ID, "login")
                   or d.find_elements(By.CSS_SELECTOR, "#doors button"))
        seen["after_wait"] = "login" if driver.find_elements(By.ID, "login") else "doors"

    run(steps, 390, 844)


if __name__ == "__main__":
    main()
