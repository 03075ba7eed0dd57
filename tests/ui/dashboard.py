"""Drives the dashboard at /ui in Debian's chromium with Playwright, as a user would.

Run by tests/ui.rs: python dashboard.py BASE_URL PASSWORD EXAMPLES_DIR SHOTS_DIR.
Each step prints a line; a failure raises and names what was missing.
"""
import os
import sys

from playwright.sync_api import expect, sync_playwright

base, password, examples, shots = sys.argv[1:5]
expect.set_options(timeout=20_000)


def shot(page, name):
    page.screenshot(path=os.path.join(shots, f"{name}.png"), full_page=True)


def step(name):
    print("ok", name, flush=True)


with sync_playwright() as p:
    browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("dialog", lambda dialog: dialog.accept())

    # / redirects to /ui; a wrong password says so.
    page.goto(base + "/")
    assert page.url.startswith(base + "/ui"), page.url
    page.fill("#user", "oscar")
    page.fill("#password", "wrong")
    page.click("#login")
    expect(page.locator("#login-error")).to_contain_text("Wrong user name, password or token")
    # A server with a password is not called open.
    assert page.locator("#open-server").count() == 0
    shot(page, "login")
    step("a wrong password is refused with a message")

    page.fill("#password", password)
    page.click("#login")
    expect(page.locator("h1")).to_have_text("Services")
    step("logged in")

    # Deploy the grayscale example by dropping its FDL and its .wasm.
    page.set_input_files(
        "section.card .drop input[type=file]",
        [os.path.join(examples, "wasm/grayscale/service.yaml"), os.path.join(examples, "wasm/dist/grayscale.wasm")],
    )
    expect(page.locator("#deploy-status")).to_contain_text("Deployed grayscale")
    expect(page.locator("#services")).to_contain_text("grayscale")
    step("deployed grayscale from its FDL and .wasm")

    # A 400 from the server is shown as its message.
    page.fill("#new-definition", "name: Bad_Name\n")
    page.click("#create")
    expect(page.locator("#deploy-status")).to_contain_text("name")
    expect(page.locator("#deploy-status")).to_have_class("error")
    step("a 400 shows the server's message")

    # Invoke it with an image: the gray result is displayed.
    page.click("text=grayscale")
    expect(page.locator("h1")).to_have_text("Service grayscale")
    page.set_input_files("section.card .drop input[type=file] >> nth=0", os.path.join(examples, "images/sample.jpg"))
    page.click("#run")
    expect(page.locator("#outcome")).to_contain_text("success")
    image = page.locator("#result img")
    expect(image).to_be_visible()
    width = image.evaluate("img => img.naturalWidth")
    assert width > 0, width
    shot(page, "service")
    step("a synchronous call shows the gray image")

    # A job appears and succeeds without a reload; its log and outputs open.
    page.click("#submit-job")
    expect(page.locator("#outcome")).to_contain_text("submitted")
    expect(page.locator("#jobs .status-Succeeded").first).to_be_visible()
    page.locator("#jobs a").first.click()
    expect(page.locator("#job-log")).to_be_visible()
    expect(page.locator("#outputs")).to_contain_text(".png")
    page.locator("#outputs button", has_text="Preview").first.click()
    expect(page.locator("#output-preview img")).to_be_visible()
    step("a job ran, updated live, and its log and outputs opened")

    # Editing the definition: an invalid value shows the server's 400 inline.
    text = page.input_value("#definition")
    page.fill("#definition", text.replace("memory: 256Mi", "memory: lots"))
    page.click("#save")
    expect(page.locator("#definition-status")).to_contain_text("memory")
    page.fill("#definition", text)
    page.click("#save")
    expect(page.locator("#definition-status")).to_have_text("Saved.")
    step("definition edits show validation errors inline")

    # Storage: a service with an input folder; a file uploaded there becomes a job whose
    # output lands in the output folder.
    page.goto(base + "/ui#/services")
    page.fill(
        "#new-definition",
        "name: gray-store\nmodule: " + page.evaluate("""async () => {
            const r = await fetch('/system/services/grayscale', {headers: {Authorization: sessionStorage.getItem('oscar-wasm-auth')}});
            return (await r.json()).module; }""")
        + "\ninput:\n- storage_provider: minio.default\n  path: photos/in\noutput:\n- storage_provider: minio.default\n  path: photos/out\n",
    )
    page.click("#create")
    expect(page.locator("#deploy-status")).to_contain_text("Created gray-store")
    page.goto(base + "/ui#/buckets")
    expect(page.locator("#buckets")).to_contain_text("photos")
    shot(page, "buckets")
    page.click("#buckets >> text=photos")
    expect(page.locator("#folder")).to_have_value("in")
    page.set_input_files(".drop input[type=file]", os.path.join(examples, "images/sample.jpg"))
    expect(page.locator("#upload-status")).to_contain_text("Uploaded in/sample.jpg")
    expect(page.locator("#objects")).to_contain_text("out/sample-gray.png")
    shot(page, "bucket")
    step("an upload into the input folder produced its output")

    # At a glance: charts from the server's metrics.
    page.goto(base + "/ui#/metrics")
    expect(page.locator("#charts [data-service=grayscale]")).to_be_visible()
    # A few calls while the charts sample, so that they have something to draw.
    page.evaluate("""async () => {
        const auth = sessionStorage.getItem('oscar-wasm-auth');
        const png = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==';
        for (let i = 0; i < 20; i++) {
            await fetch('/run/grayscale', {method: 'POST', headers: {Authorization: auth}, body: png});
            await new Promise(r => setTimeout(r, 150));
        }
    }""")
    page.wait_for_function(
        "() => (document.querySelector('#charts [data-service=grayscale]')?.dataset.points | 0) >= 3"
    )
    shot(page, "metrics")
    page.goto(base + "/ui#/services")
    expect(page.locator("#services")).to_contain_text("gray-store")
    shot(page, "services")
    step("metrics charts and the services table")

    # The server goes away: the page says so.
    open(os.path.join(shots, "stop-server"), "w").close()
    for _ in range(200):
        if not os.path.exists(os.path.join(shots, "stop-server")):
            break
        page.wait_for_timeout(50)
    expect(page.locator("#banner")).to_contain_text("cannot be reached")
    step("a server that went away shows a clear message")
    browser.close()
