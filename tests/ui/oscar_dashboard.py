"""Drives OSCAR's own web dashboard (grycap/oscar-dashboard, built by scripts/oscar-dashboard/build.sh)
against an oscar-wasm server, in Debian's chromium with Playwright, as a user would.

    python oscar_dashboard.py SERVER_URL PASSWORD BUNDLE_DIR [--shots DIR] [--module X.wasm]
                              [--monaco DIR] [--console-errors fail|warn]

The dashboard is a static bundle that calls the OSCAR API on the origin it is served from (built
with env.ts "deploy_container": "true", as OSCAR's own image builds it). This script serves it the
way OSCAR does (main.go: r.Static("/ui", "./assets")) from a small in-process HTTP server on a
free loopback port: the bundle under /ui/, "/" redirecting to /ui/, and every other path (/system,
/run, /job, /health, ...; any method, headers and body) forwarded to SERVER_URL. The browser
talks to that one origin, plus the S3 endpoint /system/config names (the dashboard lists buckets
and objects with the AWS SDK from the browser, as with OSCAR's MinIO).

With --module, it first deploys that module as the service "dash-upper" (input dash-upper/in,
output dash-upper/out), creates the bucket "dash-bucket" and runs one job, so that the lists are
not empty. Without it the server must already have a service.

Then it logs in (user "oscar") and walks: the services list, a service's settings page and its
FDL (inline editor and "Download FDL"), a synchronous invocation with some text, the deployment
and logs pages (and one job's log), the buckets page and one bucket, and every other page in the
sidebar. Each page prints "ok <page>" when it rendered (its heading or table is visible and the
React root is not blank). Every uncaught exception (pageerror) and every console error is
recorded with the page it happened on, as are API answers of 400 and above. The exit status is
non-zero if a page did not render, if there was any uncaught exception, or (unless
--console-errors warn) any console error from the dashboard itself. Requests to other hosts
(Google Fonts, the Monaco CDN, GitHub for the hub) are blocked so that the run is hermetic; with
--monaco DIR (monaco-editor's min/vs folder, e.g. the build's node_modules/monaco-editor/min/vs)
the Monaco CDN requests are answered from DIR, so that the code editors load too.
"""
import argparse
import base64
import http.client
import http.server
import json
import mimetypes
import os
import re
import sys
import threading
import time
import traceback
import urllib.parse
import urllib.request

from playwright.sync_api import expect, sync_playwright

SERVICE = "dash-upper"
# Pages whose API oscar-wasm answers 501 by design (README, "Coming from OSCAR"): the page must
# still render, showing its own error state, with no uncaught exception; its console errors
# and 501 answers are listed but not counted. Every page's API is offered now.
NOT_OFFERED = set()
BUCKET = "dash-bucket"
TEXT = "hello from the oscar dashboard"

# A hook for diagnosis: a callable (method, path, status, headers, body) -> (status, headers,
# body) applied to every proxied answer. None in normal runs.
RESPONSE_HOOK = None

HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "trailers", "transfer-encoding", "upgrade", "host", "content-length",
}
# Set by http.server itself on every answer.
OWN_HEADERS = {"date", "server"}


# --------------------------------------------------------------------------------------------
# The same-origin server: the bundle under /ui/, everything else forwarded.


def make_server(bundle, upstream):
    bundle = os.path.realpath(bundle)
    target = urllib.parse.urlsplit(upstream)
    api_log = []  # (method, path, status) of every forwarded request

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _send(self, status, headers, body):
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _read_body(self):
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else None

        def _static(self):
            path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
            if path == "/ui":
                return self._send(301, [("Location", "/ui/")], b"")
            rel = path[len("/ui/"):]
            file = os.path.realpath(os.path.join(bundle, rel))
            if not rel or not file.startswith(bundle + os.sep) or not os.path.isfile(file):
                # Client-side routes (and the root) get index.html.
                file = os.path.join(bundle, "index.html")
            with open(file, "rb") as f:
                body = f.read()
            kind = mimetypes.guess_type(file)[0] or "application/octet-stream"
            if file.endswith((".js", ".mjs")):
                kind = "text/javascript"
            self._send(200, [("Content-Type", kind), ("Cache-Control", "no-store")], body)

        def _proxy(self):
            body = self._read_body()
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            headers["Host"] = target.netloc
            headers["X-Forwarded-Host"] = self.headers.get("Host", "")
            headers["X-Forwarded-Proto"] = "http"
            headers["X-Forwarded-For"] = self.client_address[0]
            if body is not None:
                headers["Content-Length"] = str(len(body))
            conn_class = http.client.HTTPSConnection if target.scheme == "https" else http.client.HTTPConnection
            conn = conn_class(target.netloc, timeout=120)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                status = resp.status
                out = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP | OWN_HEADERS]
            except OSError as e:
                status, out, data = 502, [("Content-Type", "text/plain")], f"proxy: {e}".encode()
            finally:
                conn.close()
            if RESPONSE_HOOK is not None:
                status, out, data = RESPONSE_HOOK(self.command, self.path, status, out, data)
            api_log.append((self.command, self.path, status))
            self._send(status, out, data)

        def _handle(self):
            path = urllib.parse.urlsplit(self.path).path
            if path == "/":
                return self._send(302, [("Location", "/ui/")], b"")
            if path == "/ui" or path.startswith("/ui/"):
                if self.command in ("GET", "HEAD"):
                    return self._static()
                return self._send(405, [("Allow", "GET, HEAD")], b"")
            return self._proxy()

        do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _handle

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, api_log


# --------------------------------------------------------------------------------------------
# Set-up through the API.


def api(base, password, method, path, body=None, content_type="application/json"):
    request = urllib.request.Request(base + path, data=body, method=method)
    request.add_header("Authorization", "Basic " + base64.b64encode(f"oscar:{password}".encode()).decode())
    if body is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_until(what, condition, timeout=60):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def set_up(base, password, module):
    with open(module, "rb") as f:
        status, body = api(base, password, "POST", "/system/modules", f.read(), "application/wasm")
    assert status in (200, 201), (status, body)
    definition = {
        "name": SERVICE,
        "module": json.loads(body)["digest"],
        "memory": "64Mi",
        "input": [{"storage_provider": "minio.default", "path": f"{SERVICE}/in"}],
        "output": [{"storage_provider": "minio.default", "path": f"{SERVICE}/out"}],
    }
    status, body = api(base, password, "GET", f"/system/services/{SERVICE}")
    method = "PUT" if status == 200 else "POST"
    status, body = api(base, password, method, "/system/services", json.dumps(definition).encode())
    assert status in (200, 201, 204), (method, status, body)
    status, body = api(base, password, "POST", "/system/buckets", json.dumps({"bucket_name": BUCKET}).encode())
    assert status in (200, 201, 409), ("bucket", status, body)
    status, body = api(base, password, "POST", f"/job/{SERVICE}", base64.b64encode(TEXT.encode()), "text/plain")
    assert status in (200, 201, 202), ("job", status, body)

    def job_done():
        status, body = api(base, password, "GET", f"/system/logs/{SERVICE}")
        jobs = json.loads(body).get("jobs") or {} if status == 200 else {}
        return any(job.get("status") in ("Succeeded", "Failed") for job in jobs.values())

    wait_until("the set-up job to finish", job_done)
    print("ok set-up: service", SERVICE, "bucket", BUCKET, "and one job", flush=True)


# --------------------------------------------------------------------------------------------
# The walk.


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("server")
    parser.add_argument("password")
    parser.add_argument("bundle")
    parser.add_argument("--shots", help="folder for a screenshot of each page")
    parser.add_argument("--module", help="a .wasm to deploy as the service dash-upper first")
    parser.add_argument("--monaco", help="monaco-editor's min/vs folder, served for the CDN's")
    parser.add_argument("--console-errors", choices=["fail", "warn"], default="fail")
    args = parser.parse_args()
    server_url = args.server.rstrip("/")
    expect.set_options(timeout=20_000)

    if args.module:
        set_up(server_url, args.password, args.module)
    status, body = api(server_url, args.password, "GET", "/system/services")
    services = json.loads(body) if status == 200 else []
    assert services, f"the server has no service to show (GET /system/services: {status}); pass --module"
    service = SERVICE if any(s.get("name") == SERVICE for s in services) else services[0]["name"]
    status, body = api(server_url, args.password, "GET", "/system/buckets")
    buckets = [b.get("bucket_name") for b in json.loads(body)] if status == 200 else []

    proxy, api_log = make_server(args.bundle, server_url)
    origin = f"http://127.0.0.1:{proxy.server_address[1]}"
    print("dashboard at", origin + "/ui/", "->", server_url, flush=True)

    current = {"page": "load"}
    uncaught, console_errors, external, http_errors, failures = [], [], set(), [], []
    # Errors that follow from a blocked request to another host on the same page (the Monaco
    # CDN, GitHub for the hub): listed, not counted.
    blocked_on = set()  # pages, and "monaco" once the Monaco CDN was refused
    from_blocked = []
    passed = []

    def local(url):
        host = urllib.parse.urlsplit(url).hostname or ""
        return url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost", "::1")

    def route(r):
        url = r.request.url
        if local(url):
            return r.continue_()
        m = re.match(r"https://cdn\.jsdelivr\.net/npm/monaco-editor@[^/]+/min/vs/(.*)", url)
        if m and args.monaco:
            file = os.path.join(args.monaco, urllib.parse.unquote(m.group(1).split("?")[0]))
            if os.path.isfile(file):
                kind = "text/javascript" if file.endswith(".js") else mimetypes.guess_type(file)[0]
                with open(file, "rb") as f:
                    return r.fulfill(status=200, body=f.read(), content_type=kind or "application/octet-stream",
                                     headers={"Access-Control-Allow-Origin": "*"})
        external.add(urllib.parse.urlsplit(url).netloc)
        blocked_on.add(current["page"])
        if m:
            blocked_on.add("monaco")
        if urllib.parse.urlsplit(url).netloc == "fonts.googleapis.com":
            return r.fulfill(status=200, body="", content_type="text/css")
        return r.abort("blockedbyclient")

    def blocked_cause(text):
        # The Monaco loader rejects with the <script> error Event; fetch() rejects with
        # "TypeError: Failed to fetch".
        # The loader keeps its failed promise: every later editor fails the same way.
        if "monaco" in blocked_on and (text.strip() in ("Event", ": Event") or "Monaco initialization" in text):
            return True
        return current["page"] in blocked_on and "Failed to fetch" in text

    def on_pageerror(error):
        if blocked_cause(f"{error.name}: {error.message}"):
            from_blocked.append((current["page"], f"uncaught {error.name}: {error.message}"))
            return
        uncaught.append((current["page"], f"{error.name}: {error.message}", error.stack or ""))
        print(f"  uncaught on {current['page']}: {error.name}: {error.message}", flush=True)

    def on_console(message):
        if message.type != "error":
            return
        where = message.location or {}
        source = where.get("url", "")
        text = message.text
        # A blocked request to another host is reported as a failed load of that resource.
        if source and not local(source) or "ERR_BLOCKED_BY_CLIENT" in text:
            return
        if blocked_cause(text):
            from_blocked.append((current["page"], "console: " + text.splitlines()[0]))
            return
        if current["page"] in NOT_OFFERED:
            print(f"  console error on {current['page']} (its API is not offered; not counted): {text[:200]}", flush=True)
            return
        console_errors.append((current["page"], text, f"{source}:{where.get('lineNumber')}"))
        print(f"  console error on {current['page']}: {text[:300]}", flush=True)

    def on_response(response):
        if response.status >= 400 and local(response.url):
            request = response.request
            http_errors.append((current["page"], request.method, response.url.replace(origin, ""), response.status))

    def shot(page, name):
        if args.shots:
            os.makedirs(args.shots, exist_ok=True)
            page.screenshot(path=os.path.join(args.shots, f"{name}.png"), full_page=True)

    def root_text(page):
        return page.evaluate("() => (document.getElementById('root')?.innerText || '').trim()")

    def check(page, name, fn):
        """Runs one page's steps; records a failure and carries on with the next page."""
        current["page"] = name
        before = len(uncaught)
        try:
            fn()
            text = root_text(page)
            assert len(text) > 40, f"#root is (nearly) blank: {text!r}"
            assert len(uncaught) == before, f"uncaught {uncaught[before][1]}"
            passed.append(name)
            print("ok", name, flush=True)
        except Exception as e:  # noqa: BLE001 - a page's failure is reported, the walk goes on
            message = " ".join(str(e).split("\nCall log:")[0].split())
            # The check that failed, as this script words it.
            frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == __file__]
            if frames:
                message = f"{message} [at: {frames[-1].line}]"
            if len(uncaught) > before:
                message = f"uncaught {uncaught[before][1]}; then: {message}"
            failures.append((name, message))
            print(f"FAIL {name}: {message}", flush=True)
        finally:
            try:
                shot(page, re.sub(r"[^a-z0-9]+", "-", name.lower()))
            except Exception:  # noqa: BLE001
                pass

    def open_route(page, hash_route, sidebar=None):
        """Goes to a page by its sidebar link, as a user does, else by its URL (a same-document
        hash change). When the app is gone (an uncaught error in a render leaves #root empty:
        the dashboard has no error boundary) it is started again on the services page first:
        opening a page such as Info as the very first one races two GET /system/config calls
        (AuthContext.tsx:84 and MinioContext.tsx:507) in the dashboard itself."""
        if not root_text(page):
            page.goto(f"{origin}/ui/#/ui/services")
            page.reload()
            expect(page.locator('a[href="#/ui/services"]').first).to_be_visible()
            expect(page.locator("main table")).to_be_visible()
        link = page.locator(f'a[href="#{sidebar}"]') if sidebar else None
        if link is not None and link.count() > 0:
            link.first.click()
        else:
            page.goto(f"{origin}/ui/#{hash_route}")
        page.wait_for_url(re.compile(re.escape("#" + hash_route) + r"($|[/?])"))

    def header(page, title):
        # GenericTopbar's title, a link in <main> (the sidebar has one of the same name).
        return page.locator("main").get_by_role("link", name=title, exact=True).first

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True)
        context.route("**/*", route)
        page = context.new_page()
        page.on("pageerror", on_pageerror)
        page.on("console", on_console)
        page.on("response", on_response)
        page.on("dialog", lambda dialog: dialog.accept())

        def login():
            page.goto(origin + "/")
            expect(page.locator("input[name=username]")).to_be_visible()
            endpoint = page.locator("input[name=endpoint]")
            if endpoint.count():  # only in a bundle not built for its own origin
                endpoint.fill(origin)
            # (No wrong-password check: a 401 carries WWW-Authenticate: Basic, from OSCAR's
            # gin.BasicAuth as from oscar-wasm, so chromium answers the dashboard's XHR with its
            # own credentials prompt, which a headless browser never closes.)
            page.fill("input[name=username]", "oscar")
            page.fill("input[name=password]", args.password)
            page.click("button[name=normal]")
            page.wait_for_url(re.compile(r"#/ui/services$"))

        check(page, "login", login)

        def services_list():
            if "#/ui/services" not in page.url:
                open_route(page, "/ui/services")
            expect(header(page, "Services")).to_be_visible()
            expect(page.locator("table").get_by_role("link", name=service, exact=True)).to_be_visible()
            # The dashboard reads /system/info (clusterInfo, hence the version-dependent columns
            # and tabs) only when it starts with a stored login, not right after logging in:
            # start it again, as a returning user does.
            page.reload()
            expect(page.locator("main table thead").get_by_text("Deployment", exact=True)).to_be_visible()
            row = page.locator("main table tbody tr").filter(has=page.get_by_role("link", name=service, exact=True))
            # The deployment column's badge, from GET /system/services/{name}/deployment.
            expect(row.get_by_text(re.compile(r"^(Ready|Pending|Failed|Stopped|Unknown|Degraded)", re.I)).first).to_be_visible()

        check(page, "services", services_list)

        def service_page():
            link = page.locator("table").get_by_role("link", name=service, exact=True)
            if link.count():
                link.click()
            else:
                open_route(page, f"/ui/services/{service}/settings")
            page.wait_for_url(re.compile(rf"#/ui/services/{re.escape(service)}/settings$"))
            expect(page.get_by_text("FDL / Script")).to_be_visible()
            page.wait_for_function(
                "name => [...document.querySelectorAll('main input')].some(i => i.value === name)", arg=service)

        check(page, "service settings", service_page)

        def fdl():
            if not page.url.endswith(f"/ui/services/{service}/settings"):
                open_route(page, f"/ui/services/{service}/settings")
            with page.expect_download() as download:
                page.get_by_role("button", name="Download FDL").click()
            path = download.value.path()
            with open(path, encoding="utf-8") as f:
                text = f.read()
            assert re.search(rf"name: {re.escape(service)}\b", text), f"the FDL names no service: {text[:500]!r}"
            page.get_by_role("button", name="Edit FDL and script inline").click()
            expect(page.get_by_text("Edit the current service FDL and script directly")).to_be_visible()
            if args.monaco:
                expect(page.locator(".monaco-editor .view-lines").first).to_contain_text(f"name: {service}")

        check(page, "service FDL", fdl)

        def invoke():
            if not page.url.endswith(f"/ui/services/{service}/settings"):
                open_route(page, f"/ui/services/{service}/settings")
            page.get_by_role("button", name="Invoke", exact=True).click()
            dialog = page.get_by_role("dialog")
            expect(dialog).to_contain_text(f"Invoke service: {service}")
            dialog.locator("input[type=file]").set_input_files(
                {"name": "input.txt", "mimeType": "text/plain", "buffer": TEXT.encode()})
            expect(dialog).to_contain_text("input.txt")
            dialog.get_by_role("button", name="Invoke Service").click()
            expect(dialog.get_by_role("button", name="Go back")).to_be_visible()
            expect(dialog).to_contain_text(TEXT.upper())
            page.keyboard.press("Escape")
            expect(dialog).to_have_count(0)

        check(page, "service invoke", invoke)

        def deployment():
            tab = page.locator("main").get_by_role("link", name="Deployment")
            if tab.count() and root_text(page):
                tab.first.click()
            else:
                open_route(page, f"/ui/services/{service}/deployment")
            page.wait_for_url(re.compile(r"/deployment$"))
            expect(page.get_by_text("Current deployment status")).to_be_visible()

        check(page, "service deployment", deployment)

        def logs():
            tab = page.locator("main").get_by_role("link", name="Logs")
            if tab.count() and root_text(page):
                tab.first.click()
            else:
                open_route(page, f"/ui/services/{service}/logs")
            page.wait_for_url(re.compile(r"/logs$"))
            row = page.locator("main table tbody tr").filter(has_text=re.compile("Succeeded|Failed")).first
            expect(row).to_be_visible()
            job = row.locator("td").nth(1).inner_text().strip()
            with page.expect_response(lambda r: r.url.endswith(f"/system/logs/{service}/{job}")) as response:
                row.locator("button:has(svg.lucide-eye)").click()
            assert response.value.status == 200, f"GET /system/logs/{service}/{job}: {response.value.status}"
            dialog = page.get_by_role("dialog")
            expect(dialog).to_contain_text(f"Log name: {job}")
            expect(dialog.get_by_text("Failed to fetch log")).to_have_count(0)
            if args.monaco:
                expect(dialog.locator(".monaco-editor .view-lines")).to_contain_text(re.compile(r"\S"))
            page.keyboard.press("Escape")
            expect(dialog).to_have_count(0)

        check(page, "service logs", logs)

        def buckets_page():
            open_route(page, "/ui/minio", sidebar="/ui/minio")
            expect(header(page, "Buckets")).to_be_visible()
            for name in [b for b in (BUCKET, SERVICE) if b in buckets] or buckets[:1]:
                expect(page.locator("main").get_by_text(name, exact=True).first).to_be_visible()

        check(page, "buckets", buckets_page)

        def bucket_page():
            name = SERVICE if SERVICE in buckets else (buckets or [BUCKET])[0]
            link = page.locator("main").get_by_text(name, exact=True)
            if link.count() and root_text(page):
                link.first.click()
            else:
                open_route(page, f"/ui/minio/{name}")
            page.wait_for_url(re.compile(rf"#/ui/minio/{re.escape(name)}"))
            expect(page.locator("main table thead").get_by_text("Name", exact=True)).to_be_visible()
            if name == SERVICE:
                # The set-up job wrote its result to dash-upper/out/: the folder, then the file.
                folder = page.locator("main table tbody").get_by_text("out", exact=True)
                expect(folder).to_be_visible()
                folder.click()
                expect(page.locator("main table tbody").get_by_text(re.compile(r"\.txt$")).first).to_be_visible()

        check(page, "bucket", bucket_page)

        # The other pages of the sidebar: its top bar's title, then something of its own.
        in_main = lambda text: page.locator("main").get_by_text(text, exact=True).first  # noqa: E731
        table_head = lambda: page.locator("main table thead").get_by_text("Name", exact=True)  # noqa: E731
        pages = [  # name, route, title, own content, the API call it makes, its error state
            ("volumes", "/ui/volumes", "Volumes",
             lambda: page.get_by_placeholder("Search volumes by name"), "/system/volumes", "Failed to load volumes"),
            ("notebooks", "/ui/notebooks", "Notebooks", table_head, "/system/services", None),
            ("flows", "/ui/flows", "Flows", table_head, "/system/services", None),
            ("terminals", "/ui/terminals", "Terminals", table_head, "/system/services", None),
            ("file browsers", "/ui/filebrowsers", "File Browsers", table_head, "/system/services", None),
            ("hub", "/ui/hub", "Hub", None, None, None),
            ("quotas", "/ui/quotas", "Quotas", lambda: page.locator("main").get_by_placeholder("User ID"), None, None),
            ("status", "/ui/status", "Status", lambda: in_main("Nodes"), "/system/status", None),
            # OSCAR's metrics API, from the usage accounts: its KPIs and the service invoked above.
            ("metrics", "/ui/metrics", "Metrics", lambda: in_main("Total requests"), "/system/metrics",
             "Failed to load metrics"),
        ]
        for name, hash_route, title, content, call, error_text in pages:
            def simple(hash_route=hash_route, title=title, content=content, call=call, error_text=error_text):
                if call:
                    path = origin + call
                    with page.expect_response(lambda r: r.url == path or r.url.startswith(path + "?")) as answer:
                        open_route(page, hash_route, sidebar=hash_route)
                    status = answer.value.status
                    assert status < 400, f"GET {call}: {status} {answer.value.text()[:200]}"
                else:
                    open_route(page, hash_route, sidebar=hash_route)
                expect(header(page, title)).to_be_visible()
                if content:
                    expect(content()).to_be_visible()
                if error_text:
                    expect(page.locator("main").get_by_text(error_text)).to_have_count(0)

            check(page, name, simple)

        def info():
            open_route(page, "/ui/info", sidebar="/ui/info")
            expect(page.get_by_role("heading", name="Server information")).to_be_visible()
            expect(page.get_by_role("heading", name="MinIO")).to_be_visible()
            version = json.loads(api(server_url, args.password, "GET", "/system/info")[1]).get("version", "")
            expect(page.locator("main")).to_contain_text(version)

        check(page, "info", info)
        browser.close()

    proxy.shutdown()

    print()
    print(f"{len(passed)} pages rendered: {', '.join(passed)}")
    if failures:
        print(f"{len(failures)} pages failed:")
        for name, message in failures:
            print(f"  {name}: {message}")
    if uncaught:
        print(f"{len(uncaught)} uncaught exceptions:")
        for name, message, stack in uncaught:
            print(f"  on {name}: {message}")
            for line in stack.splitlines()[1:4]:
                print(f"      {line.strip()}")
    if console_errors:
        print(f"{len(console_errors)} console errors:")
        for name, message, source in console_errors:
            print(f"  on {name}: {message[:500]}  ({source})")
    if http_errors:
        print(f"{len(http_errors)} HTTP answers >= 400:")
        seen = set()
        for name, method, url, status in http_errors:
            if (name, method, url, status) not in seen:
                seen.add((name, method, url, status))
                print(f"  on {name}: {method} {url} -> {status}")
    if external:
        print("blocked requests to other hosts:", ", ".join(sorted(external)))
    for name, message in from_blocked:
        print(f"  on {name}, after a blocked request (not counted): {message[:200]}")
    bad = failures or uncaught or (console_errors and args.console_errors == "fail")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
