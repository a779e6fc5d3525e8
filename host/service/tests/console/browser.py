#!/usr/bin/env python3
"""Drives the admin console at /admin of a running `dsession serve` in
headless Chromium, and checks what it shows against the API.

Env: DSESSION_URL (http://127.0.0.1:7480), DSESSION_ADMIN_KEY, SCREENSHOTS
(a directory for the PNGs), BIG_USER (bulk) and BIG_USER_SESSIONS (10000):
a user who already holds that many sessions, CHROMIUM (/usr/bin/chromium).
Exits non-zero with a message on the first failure.
"""
import json
import os
import statistics
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect, sync_playwright

URL = os.environ.get("DSESSION_URL", "http://127.0.0.1:7480").rstrip("/")
KEY = os.environ.get("DSESSION_ADMIN_KEY", "")
SHOTS = os.environ.get("SCREENSHOTS", "screenshots")
BIG_USER = os.environ.get("BIG_USER", "bulk")
BIG = int(os.environ.get("BIG_USER_SESSIONS", "10000"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
PAGE_BUDGET_S = 1.0
TIMEOUT_MS = 10_000

DEVICES = {
    "laptop": ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
               "Chrome/126.0.0.0 Safari/537.36", "203.0.113.7"),
    "phone": ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
              "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1", "198.51.100.23"),
    "tablet": ("Mozilla/5.0 (Linux; Android 14; SM-X910) AppleWebKit/537.36 (KHTML, like Gecko) "
               "Chrome/125.0.0.0 Safari/537.36", "192.0.2.44"),
}


def step(text):
    print(f"-- {text}", flush=True)


def api(method, path, body=None, token=None):
    """One call to the service; returns (status, parsed JSON body or None)."""
    headers = {"Authorization": f"Bearer {token if token is not None else KEY}"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(URL + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return response.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            return err.code, json.loads(raw)
        except ValueError:
            return err.code, raw.decode(errors="replace")


def create_session(user, device, user_agent, ip, labels):
    status, body = api("POST", "/v1/tokens", {
        "user_id": user, "ttl": 3600,
        "attributes": {"device": device, "user_agent": user_agent, "ip": ip, "labels": labels}})
    assert status == 201, f"POST /v1/tokens for {user}/{device}: {status} {body}"
    return body["token"]


def auth_status(token):
    status, _ = api("GET", "/auth", token=token)
    return status


def revoke_all_of(user):
    status, body = api("DELETE", f"/v1/users/{urllib.parse.quote(user, safe='')}/tokens")
    assert status == 204, f"DELETE tokens of {user}: {status} {body}"


def rows(page):
    return page.locator("#sessions tbody tr[data-session]")


# Waits for #list-status to say "… on page N (…", or for #error to show.
PAGE_SHOWN = """(n) => {
  const error = document.getElementById('error');
  if (!error.hidden) return 'error: ' + error.textContent;
  return document.getElementById('list-status').textContent.includes(' on page ' + n + ' (') && 'ok';
}"""


def wait_page(page, number):
    result = page.wait_for_function(PAGE_SHOWN, arg=number, polling="raf", timeout=TIMEOUT_MS).json_value()
    assert result == "ok", f"page {number}: {result}"


def main():
    assert KEY, "DSESSION_ADMIN_KEY is not set"
    os.makedirs(SHOTS, exist_ok=True)
    console_errors = []
    # (text start, url end) of console errors that are expected.
    allowed = []

    def on_console(message):
        if message.type != "error":
            return
        url = message.location.get("url", "")
        if any(message.text.startswith(t) and url.endswith(u) for t, u in allowed):
            return
        console_errors.append(f"{message.text} ({url})")

    def no_console_errors(where):
        assert not console_errors, f"console errors {where}: {console_errors}"

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(TIMEOUT_MS)
        expect.set_options(timeout=TIMEOUT_MS)
        page.on("console", on_console)
        page.on("pageerror", lambda err: console_errors.append(f"page error: {err}"))

        step("1. wrong admin key")
        response = page.goto(URL + "/admin")
        assert response and response.ok, f"GET /admin: {response and response.status}"
        csp = response.headers.get("content-security-policy", "")
        assert "script-src 'self'" in csp, f"GET /admin has no CSP: {csp!r}"
        allowed.append(("Failed to load resource: the server responded with a status of 401", "/v1/policy"))
        page.fill("#admin-key", "wrong-" + KEY)
        page.click("#login button[type=submit]")
        expect(page.locator("#login-error")).to_be_visible()
        expect(page.locator("#login-error")).to_contain_text("wrong")
        expect(page.locator("#main-view")).to_be_hidden()
        page.screenshot(path=os.path.join(SHOTS, "login.png"))
        allowed.pop()
        no_console_errors("on the login view")

        step("2. log in")
        page.fill("#admin-key", KEY)
        page.click("#login button[type=submit]")
        expect(page.locator("#policy")).to_be_visible()
        status, policy = api("GET", "/v1/policy")
        assert status == 200, f"GET /v1/policy: {status} {policy}"
        expect(page.locator("#policy-name")).to_have_text(policy["name"])
        expect(page.locator("#login-error")).to_be_hidden()
        stored = page.evaluate("() => [document.cookie, localStorage.length, sessionStorage.length]")
        assert stored == ["", 0, 0], f"the console stored something (cookie, local, session): {stored}"
        assert KEY not in page.content(), "the admin key is in the page"

        step("3. alice's three sessions")
        revoke_all_of("alice")
        tokens = {d: create_session("alice", d, ua, ip, {"team": "ops", "device": d})
                  for d, (ua, ip) in DEVICES.items()}
        page.fill("#user-id", "alice")
        page.click("#find button[type=submit]")
        wait_page(page, 1)
        expect(rows(page)).to_have_count(3)
        devices = sorted(rows(page).locator("td.device").all_inner_texts())
        assert devices == sorted(DEVICES), f"devices shown: {devices}"
        html = page.content()
        for device, token in tokens.items():
            assert token not in html, f"the {device} token is in the page"
        session_of = {}
        for row in rows(page).all():
            device = row.locator("td.device").inner_text()
            session_of[device] = row.get_attribute("data-session")
            ua = row.locator("td.ua")
            assert ua.get_attribute("title") == DEVICES[device][0], f"{device}: user agent title"
            assert len(ua.inner_text()) <= 60, f"{device}: user agent not shortened"
            assert row.locator("td.ip").inner_text() == DEVICES[device][1], f"{device}: ip"
            assert f"device={device}" in row.locator("td.labels").inner_text(), f"{device}: labels"
        page.screenshot(path=os.path.join(SHOTS, "sessions.png"))
        no_console_errors("listing alice")

        step("4. revoke the phone")
        page.click(f'#sessions tr[data-session="{session_of["phone"]}"] button.revoke')
        expect(rows(page)).to_have_count(2)
        expect(page.locator(f'#sessions tr[data-session="{session_of["phone"]}"]')).to_have_count(0)
        assert auth_status(tokens["phone"]) == 401, "the revoked phone token still passes /auth"
        assert auth_status(tokens["laptop"]) == 200, "the laptop token no longer passes /auth"

        step("5. revoke all of alice")
        page.click("#revoke-all")
        expect(page.locator("#revoke-all")).to_have_text("Click again to revoke all")
        expect(rows(page)).to_have_count(2)
        page.click("#revoke-all")
        expect(rows(page)).to_have_count(0)
        expect(page.locator("#revoke-all")).to_have_text("Revoke all sessions of this user")
        for device in ("laptop", "tablet"):
            assert auth_status(tokens[device]) == 401, f"the {device} token passes /auth after revoke-all"
        expect(page.locator("#error")).to_be_hidden()

        step("6. live events")
        expect(page.locator("#events-status")).to_have_text("connected")
        events = page.locator("#events li.event")
        for device, session in session_of.items():
            expect(events.and_(page.locator(f'[data-event="login"][data-session="{session}"]')),
                   f"login event of alice's {device}").to_have_count(1)
        expect(events.and_(page.locator(f'[data-event="revoke"][data-session="{session_of["phone"]}"]')),
               "revoke event of the phone").to_have_count(1)
        revoke_all = events.and_(page.locator('[data-event="revoke-all"][data-user="alice"]'))
        expect(revoke_all.first, "revoke-all event of alice").to_be_visible()
        # The revoke-all of step 5 arrives above the phone's revoke (an
        # older one, of the clean-up before step 3, sits below).
        page.wait_for_function("""(phone) => {
          const items = [...document.querySelectorAll('#events li.event')];
          const all = items.findIndex(li => li.dataset.event === 'revoke-all' && li.dataset.user === 'alice');
          const one = items.findIndex(li => li.dataset.event === 'revoke' && li.dataset.session === phone);
          return all >= 0 && one >= 0 && all < one;
        }""", arg=session_of["phone"], timeout=TIMEOUT_MS)
        page.screenshot(path=os.path.join(SHOTS, "events.png"), full_page=True)
        no_console_errors("showing events")

        step(f"7. big user {BIG_USER}: {BIG} sessions")
        # Each page: from the click to the table showing it, and, as the
        # same-run baseline, the API call alone as the console timed it.
        seen, times, fetches = set(), [], []
        total = 0
        number = 1
        page.fill("#user-id", BIG_USER)
        clicked = time.perf_counter()
        page.click("#find button[type=submit]")
        while True:
            wait_page(page, number)
            times.append(time.perf_counter() - clicked)
            status = page.locator("#list-status").inner_text()
            fetches.append(float(status.rsplit("loaded in ", 1)[1].split(" ms")[0]))
            ids = rows(page).evaluate_all("rs => rs.map(r => r.dataset.session)")
            repeated = seen.intersection(ids)
            assert not repeated and len(set(ids)) == len(ids), f"page {number} repeats sessions: {sorted(repeated)[:5]}"
            seen.update(ids)
            total += len(ids)
            assert times[-1] <= PAGE_BUDGET_S, f"page {number} took {times[-1] * 1000:.0f} ms"
            if number == 1:
                page.screenshot(path=os.path.join(SHOTS, "big-user.png"))
            if page.locator("#next-page").is_disabled():
                break
            number += 1
            clicked = time.perf_counter()
            page.click("#next-page")
        assert total == BIG, f"paged through {total} sessions of {BIG_USER}, not {BIG}"
        ms = sorted(t * 1000 for t in times)
        fetches.sort()
        print(f"BIG: pages={number} rows={total} min_ms={ms[0]:.0f} "
              f"median_ms={statistics.median(ms):.0f} max_ms={ms[-1]:.0f} "
              f"api_min_ms={fetches[0]:.0f} api_median_ms={statistics.median(fetches):.0f} "
              f"api_max_ms={fetches[-1]:.0f}", flush=True)
        expect(page.locator("#error")).to_be_hidden()
        no_console_errors(f"paging {BIG_USER}")

        step("8. log out")
        page.click("#logout")
        expect(page.locator("#login-view")).to_be_visible()
        expect(page.locator("#main-view")).to_be_hidden()
        stored = page.evaluate("() => [document.cookie, localStorage.length, sessionStorage.length]")
        assert stored == ["", 0, 0], f"the console stored something (cookie, local, session): {stored}"
        no_console_errors("at the end")
        browser.close()
    print("console browser test: all steps passed", flush=True)


if __name__ == "__main__":
    try:
        main()
    except (AssertionError, PlaywrightError) as err:
        print(f"FAIL: {err}", file=sys.stderr, flush=True)
        sys.exit(1)
