"""The web UI in a real browser: headless Chromium, driven over WebDriver, against three real agents.

Usage: python3 tests/ui/browser.py path/to/murmur [screenshot-dir]
The page must list the three nodes, show a node failed after `kill -9`, show a service with its health,
create and edit a KV key, and show the leader. Screenshots of each step go to screenshot-dir
(default target/ui-screenshots). Exit code 0 when every step works.
"""
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

IPS = {"ui-one": "127.0.73.1", "ui-two": "127.0.73.2", "ui-three": "127.0.73.3"}
BASE = "http://127.0.73.1:8500"


def api(path, method="GET", body=None, ip="127.0.73.1"):
    req = urllib.request.Request(f"http://{ip}:8500{path}", method=method,
                                 data=None if body is None else body.encode())
    with urllib.request.urlopen(req, timeout=10) as r:
        text = r.read().decode()
        return json.loads(text) if text else None


def wait(cond, limit=30.0, what="condition"):
    end = time.time() + limit
    last = None
    while time.time() < end:
        try:
            if cond():
                return
        except Exception as e:  # the page or agent is not there yet
            last = e
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} (last error: {last})")


def browser():
    o = webdriver.ChromeOptions()
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    o.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    # No first-run, sync, updates or other background traffic: the page talks to loopback only.
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1366,820", "--no-first-run", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--disable-default-apps",
              "--disable-extensions"]:
        o.add_argument(a)
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver") or
                                      "/usr/bin/chromedriver")
    return webdriver.Chrome(options=o, service=service)


def row(d, attr, value):
    return d.find_element(By.CSS_SELECTOR, f'.row[{attr}="{value}"]')


def main():
    binary = sys.argv[1]
    shots = sys.argv[2] if len(sys.argv) > 2 else os.path.join("target", "ui-screenshots")
    os.makedirs(shots, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="murmur-ui-")
    procs = {}
    d = None
    try:
        for name, ip in IPS.items():
            extra = ["-server", "-bootstrap-expect=1", "-ui"] if name == "ui-one" else []
            extra += [] if name == "ui-one" else ["-retry-join=127.0.73.1"]
            procs[name] = subprocess.Popen(
                [binary, "agent", f"-node={name}", f"-bind={ip}", f"-client={ip}",
                 f"-data-dir={os.path.join(tmp, name)}"] + extra,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait(lambda: len(api("/v1/agent/members")) == 3, what="three members")
        wait(lambda: api("/v1/status/leader") != "", what="a leader")
        # A service with a TTL check on ui-two, passing.
        api("/v1/agent/service/register", "PUT", json.dumps(
            {"Name": "web", "ID": "web-1", "Port": 8080, "Tags": ["v1"],
             "Check": {"TTL": "600s"}}), ip=IPS["ui-two"])
        api("/v1/agent/check/pass/service:web-1", "PUT", ip=IPS["ui-two"])

        d = browser()
        d.get(BASE + "/")
        assert d.current_url == BASE + "/ui/", d.current_url

        # 1. The three nodes, all passing.
        wait(lambda: len(d.find_elements(By.CSS_SELECTOR, ".row[data-node]")) == 3, what="3 node rows")
        wait(lambda: all(r.get_attribute("data-status") == "passing"
                         for r in d.find_elements(By.CSS_SELECTOR, ".row[data-node]")),
             what="every node passing")
        assert sorted(r.get_attribute("data-node")
                      for r in d.find_elements(By.CSS_SELECTOR, ".row[data-node]")) == sorted(IPS)
        d.save_screenshot(os.path.join(shots, "nodes.png"))

        # Keyboard: '/' focuses the filter, which narrows the list; arrows and Enter open a node.
        d.find_element(By.TAG_NAME, "body").send_keys("/")
        assert d.switch_to.active_element.get_attribute("id") == "filter"
        d.switch_to.active_element.send_keys("three")
        wait(lambda: [r.get_attribute("data-node") for r in
                      d.find_elements(By.CSS_SELECTOR, ".row[data-node]")] == ["ui-three"],
             what="filtered to ui-three")
        d.switch_to.active_element.send_keys(Keys.ESCAPE)
        d.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_DOWN, Keys.ENTER)
        wait(lambda: d.current_url.endswith("#/nodes/ui-three"), what="ui-three opened by keyboard")
        wait(lambda: "Serf Health Status" in d.find_element(By.ID, "detail").text,
             what="ui-three's checks")

        # 2. kill -9 of ui-three: the page turns it failed. The lag between the agent knowing and the
        # page showing is printed (a figure, not a timed assertion).
        procs["ui-three"].send_signal(signal.SIGKILL)
        procs["ui-three"].wait()
        killed = time.time()
        agent_knew = page_showed = None
        end = killed + 60
        while time.time() < end and page_showed is None:
            if agent_knew is None:
                checks = api("/v1/health/node/ui-three")
                if any(c["CheckID"] == "serfHealth" and c["Status"] == "critical" for c in checks):
                    agent_knew = time.time()
            # One read in the page, so a row rebuilt between two reads cannot go stale.
            status, text = d.execute_script(
                "const r = document.querySelector('.row[data-node=\"ui-three\"]');"
                "return r ? [r.dataset.status, r.textContent] : [null, ''];")
            if status == "critical" and "failed" in text:
                page_showed = time.time()
            time.sleep(0.05)
        assert page_showed is not None, "ui-three never showed failed"
        lag = "unknown (the agent learned it between the last two reads)"
        if agent_knew is None:
            checks = api("/v1/health/node/ui-three")
            assert any(c["CheckID"] == "serfHealth" and c["Status"] == "critical" for c in checks)
        else:
            assert agent_knew <= page_showed + 0.1, (agent_knew, page_showed)
            lag = f"{max(0.0, page_showed - agent_knew):.2f} s"
        print(f"ui: ui-three failed in the page {page_showed - killed:.2f} s after kill -9, "
              f"{lag} after the agent knew")
        assert "1 failed" in d.find_element(By.ID, "summary").text
        d.save_screenshot(os.path.join(shots, "node-failed.png"))
        for other in ("ui-one", "ui-two"):
            assert row(d, "data-node", other).get_attribute("data-status") == "passing"

        # 3. The service with its health, and an instance going critical live.
        d.get(BASE + "/ui/#/services")
        wait(lambda: row(d, "data-service", "web").get_attribute("data-status") == "passing",
             what="web passing")
        row(d, "data-service", "web").click()
        wait(lambda: d.find_element(By.CSS_SELECTOR, 'tr[data-instance="web-1"]')
             .get_attribute("data-node") == "ui-two", what="web-1 on ui-two")
        api("/v1/agent/check/fail/service:web-1?note=down", "PUT", ip=IPS["ui-two"])
        wait(lambda: d.find_element(By.CSS_SELECTOR, 'tr[data-instance="web-1"]')
             .get_attribute("data-status") == "critical", what="web-1 critical in the page")
        wait(lambda: row(d, "data-service", "web").get_attribute("data-status") == "critical",
             what="web critical in the list")
        d.save_screenshot(os.path.join(shots, "services.png"))

        # 4. A KV key created and then edited in the page, read back over the API.
        d.get(BASE + "/ui/#/kv/")
        key = wait_for(d, By.ID, "kv-key")
        key.send_keys("app/config")
        d.find_element(By.ID, "kv-value").send_keys("v1")
        d.find_element(By.ID, "kv-create").click()
        wait(lambda: d.current_url.endswith("#/kv/app/config"), what="the new key's page")
        wait(lambda: kv("app/config") == "v1", what="app/config = v1")
        wait(lambda: d.find_element(By.ID, "kv-value").get_attribute("value") == "v1",
             what="the editor shows v1")
        box = d.find_element(By.ID, "kv-value")
        box.clear()
        box.send_keys("v2 ✓")
        d.find_element(By.ID, "kv-save").click()
        wait(lambda: kv("app/config") == "v2 ✓", what="app/config = v2")
        d.save_screenshot(os.path.join(shots, "kv.png"))
        d.get(BASE + "/ui/#/kv/app/")
        wait(lambda: row(d, "data-key", "app/config"), what="app/config listed")

        # Keys with characters a URL treats specially reach the API exactly as typed, and a key with a
        # '..' segment (which a browser would fold into another endpoint) is refused in the page.
        odd = "odd key %41#?x"
        wait_for(d, By.ID, "kv-key").send_keys(odd)
        d.find_element(By.ID, "kv-value").send_keys("odd value")
        d.find_element(By.ID, "kv-create").click()
        wait(lambda: kv("app/" + urllib.parse.quote(odd, safe="")) == "odd value",
             what="the odd key created as typed")
        wait(lambda: d.current_url.endswith("#/kv/app/" + urllib.parse.quote(odd, safe="")),
             what="the odd key's page")
        wait(lambda: "modify index" in d.find_element(By.ID, "kv-info").text,
             what="the odd key loaded")
        assert d.find_element(By.ID, "kv-value").get_attribute("value") == "odd value"
        d.get(BASE + "/ui/#/kv/app/")
        wait(lambda: row(d, "data-key", "app/" + odd), what="the odd key listed")
        # Create never overwrites.
        wait_for(d, By.ID, "kv-key").send_keys("config")
        d.find_element(By.ID, "kv-create").click()
        wait(lambda: "already exists" in d.find_element(By.ID, "kv-error").text,
             what="create refused on an existing key")
        assert kv("app/config") == "v2 ✓"
        # A value a text box cannot give back byte for byte is read-only.
        api("/v1/kv/app/crlf", "PUT", "line one\r\nline two")
        d.get(BASE + "/ui/#/kv/app/crlf")
        wait(lambda: "read-only" in d.find_element(By.ID, "kv-info").text, what="crlf read-only")
        assert d.find_element(By.ID, "kv-save").get_attribute("disabled") is not None
        d.get(BASE + "/ui/#/kv/app/")
        wait_for(d, By.ID, "kv-key").send_keys("../agent/leave")
        d.find_element(By.ID, "kv-create").click()
        wait(lambda: "cannot address" in d.find_element(By.ID, "kv-error").text,
             what="the '..' key refused")
        assert api("/v1/agent/self")["Config"]["NodeName"] == "ui-one", "the agent is still up"

        # 5. The leader and peers.
        d.get(BASE + "/ui/#/servers")
        wait(lambda: d.find_element(By.CSS_SELECTOR, 'tr[data-server="ui-one"]')
             .get_attribute("data-leader") == "true", what="ui-one the leader")
        d.save_screenshot(os.path.join(shots, "servers.png"))
        # Script errors fail the test; an empty KV folder's 404 is an answer, not an error.
        errors = [e for e in d.get_log("browser")
                  if e.get("level") == "SEVERE"
                  and not ("/v1/kv/" in e.get("message", "") and "status of 404" in e.get("message", ""))]
        assert not errors, errors
        print(f"ui: every step passed; screenshots in {shots}")
    finally:
        if d is not None:
            d.quit()
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def wait_for(d, by, value):
    found = []
    wait(lambda: found.append(d.find_element(by, value)) or True, what=value)
    return found[0]


def kv(key):
    entries = api(f"/v1/kv/{key}")
    return base64.b64decode(entries[0]["Value"]).decode()


if __name__ == "__main__":
    main()
