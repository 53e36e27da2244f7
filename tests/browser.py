"""Headless Chromium for the page tests: the browser (Debian's chromium and chromedriver, which
tests/setup.sh installs), and strokes drawn on a canvas with real pointer input."""

import math
import shutil

import numpy as np

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1000,800")


def chromium(profile):
    """A headless Chromium driven through selenium, with its profile in `profile`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        raise RuntimeError("chromium and chromedriver are missing: run `bash tests/setup.sh`")
    options = webdriver.ChromeOptions()
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.binary_location = shutil.which("chromium")
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(30)
    return driver


STROKES = {  # offsets from the canvas centre (it is 280×280 CSS pixels), one stroke each
    "1": [(0, -95 + 10 * t) for t in range(20)],
    "0": [(round(55 * math.sin(a)), round(-90 * math.cos(a)))
          for a in np.linspace(0, 2 * math.pi, 40)],
    "7": [(-60, -85), (-20, -85), (20, -85), (60, -85), (45, -45), (30, -5), (15, 35),
          (0, 90)],
}


def draw(driver, canvas, points):
    """One stroke of mouse pointer input through `points`, as a person would draw it."""
    from selenium.webdriver.common.actions import interaction
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput

    actions = ActionBuilder(driver, mouse=PointerInput(interaction.POINTER_MOUSE, "mouse"),
                            duration=20)
    actions.pointer_action.move_to(canvas, *points[0]).pointer_down()
    for point in points[1:]:
        actions.pointer_action.move_to(canvas, *point)
    actions.pointer_action.pointer_up()
    actions.perform()
