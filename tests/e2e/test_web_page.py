"""The web page in a real browser: headless Chromium (selenium) against a real API and a real worker.

It pastes a key, stylizes a sample photo and sees the result appear, sends a batch and gets its zip, trains a
tiny style and sees it registered, and shows the API's own message for a file that is not an image.
`WEB_SCREENSHOT=docs/web-page.png` keeps a screenshot of the page with a finished job and a finished training
run (the one in the README).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ANIMEGAN, PROJECT_ROOT, free_port, wait_until
from tests.e2e.conftest import BUILTIN_MODEL, make_service

pytestmark = pytest.mark.e2e

SAMPLES = PROJECT_ROOT / "samples"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, request) -> Iterator[tuple[str, str]]:
    """(API URL, API key): `animegan serve` and `animegan worker` on the test Redis database."""
    root = tmp_path_factory.mktemp("web")
    service = make_service(root, "local", request)
    port = free_port()
    log = (root / "api.log").open("wb")
    api = subprocess.Popen(
        [ANIMEGAN, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=service.env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        service.start_worker("web", queues="stylize,train")

        def ready() -> bool:
            assert api.poll() is None, (root / "api.log").read_text()[-3000:]
            try:
                return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, 60, "the API's /readyz")
        made = subprocess.run([ANIMEGAN, "keys", "create", "--tenant", "web"], env=service.env,
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        yield url, re.search(r"agk_[A-Za-z0-9_-]+", made.stdout).group(0)
    finally:
        api.terminate()
        api.wait(timeout=30)
        log.close()
        service.close()


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        message = (
            "Chromium and its driver are needed: apt-get install chromium chromium-driver (.ci/run does)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)  # CI installs them; a missing browser there is a broken job, not a skip
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def wait_for(driver, script: str, what: str, timeout: float = 120):
    """Poll a JavaScript expression in the page until it is truthy; return its value."""
    return wait_until(lambda: driver.execute_script(f"return {script}"), timeout, what, interval=0.25)


def open_page_with_key(driver, url: str, key: str) -> None:
    driver.get(f"{url}/")
    field = driver.find_element("id", "api-key")
    field.clear()
    field.send_keys(key)
    driver.find_element("id", "save-key").click()
    wait_for(driver, f"[...document.querySelectorAll('#model option')].some(o => o.value === '{BUILTIN_MODEL}')",
             "the model picker to list the built-in model", timeout=30)  # fmt: skip


def test_a_dropped_photo_comes_back_stylized_beside_the_original(stack, browser):
    url, key = stack
    open_page_with_key(browser, url, key)
    assert browser.execute_script("return localStorage.getItem('animegan.apiKey')") == key
    browser.find_element("id", "file-input").send_keys(str(SAMPLES / "meadow.jpg"))
    size = wait_for(
        browser,
        "(() => { const img = document.querySelector('.job-card[data-status=succeeded] img.after');"
        " return img && img.complete && img.naturalWidth ? [img.naturalWidth, img.naturalHeight] : null; })()",
        "the stylized image to appear",
    )
    assert size == [640, 448]  # the sample's own size: reference sizing keeps multiples of 32
    card = browser.find_element("css selector", ".job-card[data-status=succeeded]")
    assert card.find_element("css selector", "img.before").get_attribute("src").startswith("blob:")
    assert card.find_element("css selector", "a.download").get_attribute("download") == "meadow.anime.png"
    assert browser.find_element("id", "error").get_attribute("hidden") is not None


def test_several_photos_make_one_batch_with_a_zip(stack, browser):
    url, key = stack
    open_page_with_key(browser, url, key)
    photos = [str(SAMPLES / name) for name in ("lake.jpg", "sunset.jpg")]
    browser.find_element("id", "file-input").send_keys("\n".join(photos))
    wait_for(
        browser,
        "document.querySelectorAll('.job-card[data-status=succeeded] img.after[src^=\"blob:\"]').length >= 2",
        "both batch results to appear",
    )
    link = browser.find_element("css selector", ".job-card[data-status=succeeded] a.download")
    assert link.text == "Download all (zip)" and link.get_attribute("download").endswith(".zip")


def test_a_training_run_shows_its_progress_and_its_model_joins_the_picker(stack, browser, tmp_path):
    url, key = stack
    open_page_with_key(browser, url, key)
    browser.find_element("id", "file-input").send_keys(str(SAMPLES / "autumn.jpg"))
    photos, styles = tmp_path / "photos.zip", tmp_path / "styles.zip"
    for archive, names in ((photos, ("meadow", "lake")), (styles, ("sunset", "autumn"))):
        with zipfile.ZipFile(archive, "w") as zf:
            for name in names:
                zf.write(SAMPLES / f"{name}.jpg", f"{name}.jpg")
    form = browser.find_element("id", "train-form")
    fields = {"name": "web-style", "photos": str(photos), "styles": str(styles), "epochs": "2",
              "init_epochs": "1", "batch_size": "2", "image_size": "32", "max_total_steps": "4", "base_channels": "8"}  # fmt: skip
    for name, value in fields.items():
        form.find_element("name", name).send_keys(value)
    form.find_element("css selector", "button[type=submit]").click()
    card = ".training-card[data-status=succeeded]"
    wait_for(browser, f"document.querySelector('{card}')", "the training run to succeed", timeout=240)
    status = browser.find_element("css selector", f"{card} .status").text
    assert "model web-style is registered" in status, status
    assert browser.execute_script("return document.getElementById('model').value") == "web-style"
    # Every logged loss term is on the chart, and the latest sample grid loaded.
    terms = browser.find_elements("css selector", f"{card} .losses span")
    assert len(terms) >= 10, [t.text for t in terms]  # init_* and the GAN's named G and D terms
    points = browser.find_element("css selector", f"{card} canvas").get_attribute("data-points")
    assert int(points) >= len(terms)
    wait_for(browser, f"(() => {{ const i = document.querySelector('{card} img.sample');"
             " return i.complete && i.naturalWidth > 0; })()", "the latest sample")  # fmt: skip
    if os.environ.get("WEB_SCREENSHOT"):
        wait_for(browser, "[...document.images].every(i => i.complete)", "every image to load")
        Path(os.environ["WEB_SCREENSHOT"]).write_bytes(browser.get_screenshot_as_png())


def test_a_file_that_is_not_an_image_shows_the_apis_message(stack, browser, tmp_path):
    url, key = stack
    open_page_with_key(browser, url, key)
    broken = tmp_path / "holiday.jpg"
    broken.write_bytes(b"these bytes are no JPEG")
    # What the API itself answers for this file: the page must show that message, not a generic one.
    answer = httpx.post(f"{url}/v1/stylize", headers={"Authorization": f"Bearer {key}"},
                        data={"model": BUILTIN_MODEL}, files={"file": ("holiday.jpg", broken.read_bytes())})  # fmt: skip
    assert answer.status_code == 415
    message = answer.json()["error"]["message"]
    browser.find_element("id", "file-input").send_keys(str(broken))
    shown = wait_for(browser, "(() => { const e = document.getElementById('error');"
                     " return e.hidden ? null : e.textContent; })()", "the error banner")  # fmt: skip
    assert shown == f"{message} (not_an_image)"
    refused = browser.find_element("css selector", ".job-card[data-status=refused] .status")
    assert message in refused.text


def test_a_first_visit_without_a_key_asks_for_one_and_shows_no_error(stack, browser):
    url, _ = stack
    browser.get(f"{url}/")
    browser.execute_script("localStorage.clear()")
    browser.get(f"{url}/")
    wait_for(browser, "document.getElementById('key-status').textContent", "the key hint")
    assert "paste your API key" in browser.find_element("id", "key-status").text
    assert browser.find_element("id", "error").get_attribute("hidden") is not None


def test_the_training_form_offers_and_sends_the_modes_and_presets_the_api_takes(stack, browser, tmp_path):
    url, key = stack
    open_page_with_key(browser, url, key)
    schema = httpx.get(f"{url}/openapi.json").json()["components"]["schemas"]
    radios = wait_for(browser, "[...document.querySelectorAll('#train-form input[name=mode]')].map(r => r.value)",
                      "the mode choices")  # fmt: skip
    assert radios == schema["TrainingMode"]["enum"]  # "distill", never the "teacher" the API refused (422)
    presets = browser.execute_script("return [...document.querySelectorAll('#train-form select[name=preset] option')]"
                                     ".map(o => o.value)")  # fmt: skip
    assert presets == ["", *schema["TrainPreset"]["enum"]]
    photos = tmp_path / "photos.zip"
    with zipfile.ZipFile(photos, "w") as zf:
        for name in ("meadow", "lake"):
            zf.write(SAMPLES / f"{name}.jpg", f"{name}.jpg")
    form = browser.find_element("id", "train-form")
    form.find_element("css selector", "input[name=mode][value=distill]").click()
    assert form.find_element("css selector", "[data-mode=distill]").is_displayed()
    fields = {"name": "web-student", "photos": str(photos), "batch_size": "2", "image_size": "32",
              "max_total_steps": "2", "base_channels": "8"}  # fmt: skip
    for name, value in fields.items():
        form.find_element("name", name).send_keys(value)
    form.find_element("css selector", "button[type=submit]").click()
    card = ".training-card[data-status=succeeded]"
    wait_for(browser, f"document.querySelector('{card}')", "the distillation run to succeed", timeout=240)
    job_id = browser.execute_script(f"return document.querySelector('{card}').dataset.jobId")
    job = httpx.get(f"{url}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"}).json()
    assert job["params"]["mode"] == "distill" and job["params"]["teacher"] == BUILTIN_MODEL
    # No preset picked: the mode's own, not the unpaired v2-hayao the page used to send for every mode.
    assert job["params"]["hyperparameters"].get("preset") is None


def test_a_reload_keeps_the_keys_earlier_photo_jobs(stack, browser):
    url, key = stack
    open_page_with_key(browser, url, key)
    listed = httpx.get(f"{url}/v1/jobs", headers={"Authorization": f"Bearer {key}"}).json()["items"]
    photo_jobs = [j["id"] for j in listed if j["kind"] in ("stylize", "batch")]
    assert photo_jobs, "the earlier tests of this module made photo jobs"
    browser.refresh()
    shown = wait_for(browser, "(() => { const c = [...document.querySelectorAll('#history .past-job')];"
                     " return c.length ? c.map(e => e.dataset.jobId) : null; })()", "the restored jobs")  # fmt: skip
    assert shown == photo_jobs[: len(shown)] and len(shown) == min(len(photo_jobs), 20)
    wait_for(browser, "document.querySelector('#history .past-job[data-status=succeeded] img.after[src^=\"blob:\"]')",
             "a restored job's result")  # fmt: skip
