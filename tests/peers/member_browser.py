"""Drives the member page in a real headless Chromium (Debian's chromium and chromium-driver,
through Selenium; nothing is downloaded), for tests/member_page.rs.

Usage: member_browser.py BASE_URL EMAIL OPEN_UNIT OTHER_EMAIL DENIED_UNIT SCREENSHOT

Opens /m/, logs in with Cobot (the simulated Cobot's login form) as EMAIL, opens OPEN_UNIT,
checks the service worker, takes a screenshot, logs out; logs in as OTHER_EMAIL and asks to
open DENIED_UNIT the way the page's buttons do (the page lists it with the reason, not as a
button), then logs out. Prints one JSON
object with what it saw; exits non-zero when a step fails.
"""

import sys

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec

from browser import run, waiter


def main():
    base, email, unit, other, denied, screenshot = sys.argv[1:7]

    def steps(driver, seen):
        wait = waiter(driver)
        def log_in(who):
            driver.get(base + "/m/")
            wait.until(ec.element_to_be_clickable((By.ID, "login"))).click()
            wait.until(ec.presence_of_element_located((By.ID, "email"))).send_keys(who)
            driver.find_element(By.ID, "allow").click()

        log_in(email)
        button = wait.until(ec.element_to_be_clickable(
            (By.CSS_SELECTOR, f'button[data-unit="{unit}"]')))
        seen["url_after_login"] = driver.current_url
        seen["buttons"] = [b.get_attribute("data-unit") for b in
                           driver.find_elements(By.CSS_SELECTOR, "#doors button[data-unit]")]
        button.click()
        wait.until(lambda d: "open." in d.find_element(By.CSS_SELECTOR, "[role=status]").text
                   or "did not open" in d.find_element(By.CSS_SELECTOR, "[role=status]").text)
        seen["opened"] = driver.find_element(By.CSS_SELECTOR, "[role=status]").text
        seen["service_worker"] = driver.execute_async_script(
            """
            const done = arguments[arguments.length - 1];
            navigator.serviceWorker.ready.then((r) => done(r.active ? r.active.scriptURL : null));
            setTimeout(() => done("not ready"), 5000);
            """
        )
        seen["manifest"] = driver.find_element(
            By.CSS_SELECTOR, 'link[rel="manifest"]').get_attribute("href")
        driver.save_screenshot(screenshot)
        driver.find_element(By.ID, "logout").click()
        wait.until(ec.presence_of_element_located((By.ID, "login")))

        log_in(other)
        wait.until(ec.presence_of_element_located((By.ID, "closed")))
        seen["closed"] = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#closed li")]
        # A door this member may not open: the same request the buttons make.
        seen["denied"] = driver.execute_async_script(
            """
            const done = arguments[arguments.length - 1];
            const csrf = document.querySelector('meta[name="csrf-token"]').content;
            fetch("/m/open/" + arguments[0], { method: "POST", headers: { "X-CSRF-Token": csrf } })
              .then((r) => r.json().then((b) => done({ status: r.status, body: b })))
              .catch((e) => done({ error: String(e) }));
            """,
            denied,
        )
        driver.find_element(By.ID, "logout").click()
        wait.until(ec.presence_of_element_located((By.ID, "login")))
        seen["logged_out"] = True

    run(steps, 390, 844)


if __name__ == "__main__":
    main()
