"""The web console in a real headless Chromium (Debian's chromium and chromium-driver,
driven by selenium), against a running 3-node cluster started by tests/web_console.rs.

Environment:
  CONSOLE_NODES      the client URLs of the nodes, comma separated; the browser loads
                     the console from the first only
  CONSOLE_ADMIN      the admin token
  CONSOLE_READ_KEY   an API key of scope read
  CONSOLE_ADMIN_KEY  an API key of scope admin (revoked by this script midway)
  CONSOLE_OUT        where the screenshots go

Every step asserts what a user would see; a failure raises (exit status 1) with the step.
Throughout, every request the page makes is recorded from Chromium's network log and
must go to the node that served the page.
"""

import json
import os
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone

from selenium import webdriver
from selenium.common.exceptions import (ElementClickInterceptedException,
                                        StaleElementReferenceException, TimeoutException)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

NODES = os.environ["CONSOLE_NODES"].split(",")
ADMIN = os.environ["CONSOLE_ADMIN"]
READ_KEY = os.environ["CONSOLE_READ_KEY"]
ADMIN_KEY = os.environ["CONSOLE_ADMIN_KEY"]
OUT = os.environ["CONSOLE_OUT"]
CONSOLE_NODE = NODES[0]
OTHER_NODE = NODES[-1]
# Seconds a live update may take to show (the page polls every 2 s).
LIVE = 15
HALCON = "MVTec_HALCON/halcon-1"


def rpc(base, method, params, token=ADMIN):
    """One JSON-RPC call; the whole response object."""
    body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": 1})
    request = urllib.request.Request(
        base + "/licenses",
        data=body.encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer " + token},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def result(base, method, params, token=ADMIN):
    answer = rpc(base, method, params, token)
    assert "result" in answer, f"{method} failed: {answer}"
    return answer["result"]


def iso(delta):
    moment = datetime.now(timezone.utc) + delta
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--disable-gpu", "--window-size=1280,900", "--lang=en-US",
                 # Chromium's own background traffic (updates, safe browsing) is not the page's.
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))


class Console:
    """The browser, with waits and the record of every request the page made."""

    def __init__(self):
        self.driver = browser()
        self.requests = []
        self.console_errors = []
        self.shots = []

    def wait(self, what, condition, timeout=LIVE):
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.2).until(
                lambda d: condition())
        except TimeoutException:
            self.shot("failure")
            raise AssertionError(f"waited {timeout} s for {what}") from None

    def find(self, css):
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def one(self, css, what=None):
        return self.wait(what or css, lambda: (self.find(css) or [None])[0])

    def texts(self, css):
        """The rendered text of every match, read in one step: the page re-renders
        while it polls, so an element found first and read later may be gone."""
        return self.driver.execute_script(
            "return [...document.querySelectorAll(arguments[0])]"
            ".map((e) => e.innerText.trim());", css)

    def text(self, css):
        found = self.texts(css)
        return found[0] if found else ""

    def click(self, css, what=None):
        """Clicks the first match, finding it again if a re-render replaced it."""
        def attempt():
            found = self.find(css)
            if not found:
                return False
            try:
                found[0].click()
                return True
            except (StaleElementReferenceException, ElementClickInterceptedException):
                return False
        self.wait(what or f"to click {css}", attempt)

    def open(self, route):
        self.driver.get(CONSOLE_NODE + "/ui" + route)

    def go(self, page):
        """Follows the navigation link to `page` and waits for its first data."""
        self.click(f'nav a[href="#/{page}"]')
        self.loaded(page)

    def loaded(self, page):
        self.one(f'#page-{page}[data-loaded="true"]', f"the {page} page to load")

    def login(self, token, refused=False):
        field = self.one("#login-token", "the login form")
        field.clear()
        field.send_keys(token)
        self.click("#login-submit")
        if refused:
            return self.wait("the login refusal", lambda: self.text("#login-error") or None)
        self.one("#logout", "being logged in")
        return self.text("#whoami")

    def logout(self):
        self.click("#logout")
        self.one("#login-token", "the login form after logging out")

    def confirm(self, reason=None):
        self.one("#confirm-dialog[open]", "the confirmation dialog")
        if reason is not None:
            field = self.one("#dialog-reason")
            field.clear()
            field.send_keys(reason)
        self.click("#confirm-ok")

    def outcome(self, kind):
        """Waits for the status region to report `kind` (`ok` or `error`); its text."""
        return self.wait(f"an {kind} outcome",
                         lambda: self.text(f"#outcome.{kind}") or None)

    def clear_outcome(self):
        self.driver.execute_script(
            "const o = document.querySelector('#outcome');"
            "if (o) { o.className = ''; o.textContent = ''; }")

    def shot(self, name):
        path = os.path.join(OUT, f"{name}.png")
        self.driver.save_screenshot(path)
        self.shots.append(path)

    def collect_logs(self):
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message.get("method") == "Network.requestWillBeSent":
                self.requests.append(message["params"]["request"]["url"])
        for entry in self.driver.get_log("browser"):
            if entry.get("level") == "SEVERE":
                self.console_errors.append(entry["message"])


def step(name):
    print(f"web console: {name}", flush=True)


def main():
    os.makedirs(OUT, exist_ok=True)
    console_id = result(CONSOLE_NODE, "WhoAmIV1", {})["node"]
    other_id = result(OTHER_NODE, "WhoAmIV1", {})["node"]
    assert console_id != other_id
    licenses = result(CONSOLE_NODE, "ListLicensesV1", [])
    ui = Console()
    try:
        run(ui, licenses, console_id)
    finally:
        ui.collect_logs()
        ui.driver.quit()
    check_origins(ui)
    print(f"web console: {len(ui.requests)} requests, all to {CONSOLE_NODE}; "
          f"screenshots: {', '.join(os.path.basename(s) for s in ui.shots)}", flush=True)


def run(ui, licenses, console_id):
    step("the console asks for a credential, and says why one is refused")
    ui.open("")
    ui.one("#login-token")
    ui.shot("login")
    error = ui.login("lk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                     refused=True)
    assert "38" in error, error

    step("log in with the admin token")
    ui.open("")
    ui.login(ADMIN)
    assert "admin" in ui.text("#whoami").lower(), ui.text("#whoami")
    ui.wait("the serving node's id", lambda: str(console_id) in ui.text("#served-by"))

    step("overview: the leader, utilisation of every license")
    ui.loaded("overview")
    status = result(CONSOLE_NODE, "GetClusterStatusV1", {})
    leader = status["node"]["leader"]
    ui.wait("the leader on the overview", lambda: str(leader) in ui.text("#overview-leader"))
    for lic in licenses:
        ui.one(f'[data-utilisation="{lic["feature"]}/{lic["uuid"]}"]')
    ui.wait("the refusals of the last hour", lambda: ui.text("#overview-refusals"))
    ui.shot("overview")

    step("licenses: the seeded licenses and their timelines")
    ui.go("licenses")
    for lic in licenses:
        ui.one(f'[data-license="{lic["feature"]}/{lic["uuid"]}"]')
        ui.one(f'[data-license="{lic["feature"]}/{lic["uuid"]}"] [data-timeline]')
    seeded = [b["borrowId"] for lic in licenses for b in lic.get("borrowedIntervals", [])]
    assert seeded, "the test seeds borrows"
    for borrow_id in seeded:
        ui.one(f'[data-timeline] [data-borrow-id="{borrow_id}"]')
    ui.one(f'[data-license="{HALCON}"] [data-now]', "the now marker")
    seats_before = ui.text(f'[data-license="{HALCON}"] [data-seats]')
    ui.shot("licenses")
    check_controls(ui, "licenses")

    step("a borrow made through another node appears on the timeline")
    host = "MAC:0A1B2C3D4E5F"
    made = result(OTHER_NODE, "BorrowLicenseV1", {
        "feature": "MVTec_HALCON", "uuid": "halcon-1", "hostId": host,
        "validUntil": iso(timedelta(hours=6)), "userInfo": "console test"})
    borrow_id = made["borrowId"]
    bar = f'[data-license="{HALCON}"] [data-timeline] [data-borrow-id="{borrow_id}"]'
    ui.one(bar, "the new borrow on the timeline")
    ui.wait("the seat count to rise",
            lambda: ui.text(f'[data-license="{HALCON}"] [data-seats]') != seats_before)

    step("the borrow's detail: its signed fields, verified")
    ui.open(f"#/borrows?borrow={borrow_id}")
    ui.one("#borrow-detail", "the borrow's detail")
    ui.wait("the borrow's verification", lambda: "valid" in ui.text("#verify-status").lower()
            and "invalid" not in ui.text("#verify-status").lower())
    assert host in ui.text("#borrow-detail"), ui.text("#borrow-detail")
    ui.shot("borrow-detail")

    step("return it from the console")
    ui.clear_outcome()
    ui.click('#borrow-detail button[data-admin-action="return"]')
    ui.confirm()
    ui.outcome("ok")
    got = result(OTHER_NODE, "ListBorrowsV1", {"hostId": host})["borrows"]
    assert [b["status"] for b in got if b["borrowId"] == borrow_id] == ["returned"], got

    step("the borrows page lists it as returned, and the seat is free again")
    ui.go("borrows")
    field = ui.one("#filter-host")
    field.clear()
    field.send_keys(host)
    ui.click("#filter-apply")
    ui.wait("the returned borrow in the search",
            lambda: ui.text(f'tr[data-borrow-id="{borrow_id}"] [data-status]') == "returned")
    ui.shot("borrows")
    ui.go("licenses")
    ui.wait("the bar to go", lambda: not ui.find(bar))
    ui.wait("the seat count to fall back",
            lambda: ui.text(f'[data-license="{HALCON}"] [data-seats]') == seats_before)

    step("the audit trail has the return")
    ui.go("audit")
    field = ui.one("#audit-borrow")
    field.clear()
    field.send_keys(borrow_id)
    ui.click("#audit-apply")
    ui.wait("the return's audit entry",
            lambda: "return" in ui.texts("tr[data-seq] [data-kind]"))
    ui.shot("audit")

    step("block the host; its next borrow is refused")
    ui.go("hosts")
    row = f'tr[data-host-id="{host}"]'
    ui.one(row)
    ui.clear_outcome()
    ui.click(f'{row} button[data-admin-action="block"]')
    ui.confirm(reason="reported stolen")
    ui.outcome("ok")
    ui.wait("the host shown blocked", lambda: ui.text(f"{row} [data-blocked]") == "yes")
    ui.shot("hosts")
    refused = rpc(OTHER_NODE, "BorrowLicenseV1", {
        "feature": "MVTec_HALCON", "uuid": "halcon-1", "hostId": host,
        "validUntil": iso(timedelta(hours=1))})
    assert refused.get("error", {}).get("code") == 36, refused
    assert "blocked" in refused["error"]["data"]["reason"], refused
    ui.go("audit")
    for field, value in [("#audit-borrow", ""), ("#audit-host", host)]:
        box = ui.one(field)
        box.clear()
        box.send_keys(value)
    ui.click("#audit-apply")
    ui.wait("the refusal in the audit trail",
            lambda: "refusal" in ui.texts("tr[data-seq] [data-kind]"))

    step("cluster: every member and its role; hand leadership over")
    ui.go("cluster")
    members = result(CONSOLE_NODE, "GetClusterStatusV1", {})["node"]["members"]
    for member in members:
        ui.one(f'tr[data-member-id="{member["id"]}"] [data-role]')
    ui.wait("the leader's row", lambda: ui.text(
        f'tr[data-member-id="{leader}"] [data-role]') == "leader")
    ui.shot("cluster")
    target = next(m["id"] for m in members if m["id"] != leader and m["voter"])
    ui.clear_outcome()
    ui.click(f'button[data-admin-action="transfer"][data-to="{target}"]')
    ui.confirm()
    ui.outcome("ok")
    ui.wait("the new leader's row", lambda: ui.text(
        f'tr[data-member-id="{target}"] [data-role]') == "leader", timeout=30)

    step("an action refused by the server shows the reason")
    ui.logout()
    ui.login(ADMIN_KEY)
    ui.go("hosts")
    key_id = ADMIN_KEY.split("_")[1]
    result(OTHER_NODE, "RevokeApiKeyV1", {"keyId": key_id})
    ui.clear_outcome()
    ui.click(f'{row} button[data-admin-action="unblock"]')
    ui.confirm()
    refusal = ui.outcome("error")
    assert "38" in refusal and "revoked" in refusal, refusal
    ui.shot("refused")

    step("a read-only key sees every page and no action")
    ui.open("")
    if ui.find("#logout"):
        ui.logout()
    ui.login(READ_KEY)
    assert "read" in ui.text("#whoami").lower(), ui.text("#whoami")
    for page in ["overview", "licenses", "borrows", "hosts", "cluster"]:
        ui.go(page)
        time.sleep(0.5)  # a poll's rendering, too
        actions = ui.find("[data-admin-action]")
        assert not actions, f"{page}: {[a.get_attribute('data-admin-action') for a in actions]}"
        check_controls(ui, page)
    ui.shot("read-only")

    step("a phone-sized window")
    ui.driver.set_window_size(390, 844)
    ui.go("licenses")
    ui.shot("phone-licenses")
    ui.go("overview")
    ui.shot("phone-overview")


def check_controls(ui, page):
    """Every field has a label, and everything clickable is a button or a link (so the
    keyboard reaches it)."""
    unlabelled = ui.driver.execute_script("""
        return [...document.querySelectorAll('input, select, textarea')]
          .filter((f) => f.type !== 'hidden' && !f.closest('dialog:not([open])'))
          .filter((f) => !(f.labels && f.labels.length) && !f.getAttribute('aria-label')
                         && !f.getAttribute('aria-labelledby'))
          .map((f) => f.id || f.name || f.outerHTML.slice(0, 80));""")
    assert not unlabelled, f"{page}: fields without a label: {unlabelled}"
    unreachable = ui.driver.execute_script("""
        return [...document.querySelectorAll('[data-borrow-id], [data-admin-action]')]
          .filter((e) => !e.matches('tr'))
          .filter((e) => !e.matches('a[href], button, [tabindex]'))
          .map((e) => e.outerHTML.slice(0, 80));""")
    assert not unreachable, f"{page}: controls the keyboard cannot reach: {unreachable}"


def check_origins(ui):
    step("no request left the node that served the page")
    assert ui.requests, "the network log recorded requests"
    foreign = [url for url in ui.requests
               if not (url.startswith(CONSOLE_NODE + "/") or url.startswith("data:"))]
    assert not foreign, f"requests to other origins: {foreign}"
    # A refused login or action is a JSON-RPC answer (HTTP 200), not a console error; a
    # CSP violation or a script error would be one.
    assert not ui.console_errors, f"browser console errors: {ui.console_errors}"


if __name__ == "__main__":
    try:
        main()
    except AssertionError as failure:
        print(f"web console: FAILED: {failure}", file=sys.stderr, flush=True)
        sys.exit(1)
