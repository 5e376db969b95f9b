"""Drives the installer page in a real headless Chromium (Debian's chromium and
chromium-driver, through Selenium; nothing is downloaded), for tests/installer_page.rs.

Usage: page_browser.py BASE_URL PASSWORD UNIT SCREENSHOT

Logs in (first with a wrong password), waits for the doors and the decisions, pulses UNIT
(accepting the confirmation), waits for the outcome and the new decision, takes a screenshot,
logs out. Prints one JSON object with what it saw; exits non-zero with the reason when a step
fails.
"""

import sys

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec

from browser import run, waiter


def main():
    base, password, unit, screenshot = sys.argv[1:5]

    def steps(driver, seen):
        wait = waiter(driver)
        driver.get(base + "/")
        field = wait.until(ec.presence_of_element_located((By.ID, "password")))
        field.send_keys("not the password")
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        seen["wrong_password"] = wait.until(
            lambda d: d.find_element(By.CSS_SELECTOR, "p.message").text.strip() or None)
        field = wait.until(ec.presence_of_element_located((By.ID, "password")))
        field.send_keys(password)
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

        wait.until(ec.presence_of_element_located(
            (By.CSS_SELECTOR, f'.door[data-unit="{unit}"]')))
        wait.until(lambda d: d.find_element(By.ID, "health").text not in ("", "…"))
        seen["health"] = driver.find_element(By.ID, "health").text
        seen["doors"] = [e.get_attribute("data-unit")
                         for e in driver.find_elements(By.CSS_SELECTOR, ".door")]
        seen["lock_state"] = driver.find_element(
            By.CSS_SELECTOR, f'.door[data-unit="{unit}"] .lock-state').text
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#decisions li")) > 0)
        before = len(driver.find_elements(By.CSS_SELECTOR, "#decisions li"))
        seen["decisions_before"] = before
        seen["first_decision"] = driver.find_element(By.CSS_SELECTOR, "#decisions li").text

        driver.find_element(By.CSS_SELECTOR, f'button[data-unit="{unit}"]').click()
        alert = wait.until(ec.alert_is_present())
        seen["confirmation"] = alert.text
        alert.accept()
        wait.until(lambda d: "opened" in d.find_element(By.ID, "status").text
                   or "not open" in d.find_element(By.ID, "status").text
                   or "Refused" in d.find_element(By.ID, "status").text)
        seen["outcome"] = driver.find_element(By.ID, "status").text
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#decisions li")) > before)
        seen["new_decision"] = driver.find_element(By.CSS_SELECTOR, "#decisions li").text
        seen["readers"] = [row.text for row in
                           driver.find_elements(By.CSS_SELECTOR, "#readers tr")]
        seen["locks"] = [row.text for row in driver.find_elements(By.CSS_SELECTOR, "#locks tr")]
        driver.save_screenshot(screenshot)

        driver.find_element(By.ID, "logout").click()
        wait.until(ec.presence_of_element_located((By.ID, "password")))
        seen["logged_out"] = True

    run(steps, 420, 1400)


if __name__ == "__main__":
    main()
