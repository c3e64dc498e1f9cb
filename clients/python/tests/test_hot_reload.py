"""Hot reload against the real server: a model directory replaced atomically (symlink flip) and
SIGHUP swap the new version in under load with zero failed or lost requests; a corrupt version is
refused with its reason logged while the loaded one keeps serving."""
import json
import os
import shutil
import signal
import threading
import time

import numpy as np

from flowgate_client import Client, FlowgateError
from realserver import MODEL, require_real_server, running_server

require_real_server()


def make_version(root, name, version, corrupt=False):
    d = root / name
    shutil.copytree(MODEL, d)
    manifest = json.loads((d / "manifest.json").read_text())
    manifest["modelVersion"] = version
    (d / "manifest.json").write_text(json.dumps(manifest))
    if corrupt:
        data = (d / "policy.safetensors").read_bytes()
        (d / "policy.safetensors").write_bytes(data[: len(data) // 2])
    return d


def flip(link, target):
    tmp = link.with_name(link.name + ".tmp")
    if tmp.is_symlink():
        tmp.unlink()
    tmp.symlink_to(target)
    os.replace(tmp, link)  # atomic: readers see the old or the new directory, never a mix


def test_reload_under_load(tmp_path):
    v1 = make_version(tmp_path, "v1", "reload-a")
    v2 = make_version(tmp_path, "v2", "reload-b")
    bad = make_version(tmp_path, "bad", "reload-bad", corrupt=True)
    current = tmp_path / "current"
    current.symlink_to(v1)
    with running_server(tmp_path / "serve.log", str(current)) as (endpoint, proc, log):
        info = Client(endpoint).info()
        obs_dim = info["models"][0]["obs_dim"]
        stop = threading.Event()
        seen, failures, lock = [], [], threading.Lock()

        def load(k):
            rng = np.random.default_rng(k)
            with Client(endpoint, timeout_ms=20_000, retries=0) as c:
                while not stop.is_set():
                    try:
                        r = c.act(rng.standard_normal(obs_dim).astype(np.float32), steps=1, candidates=4, samples=2)
                        with lock:
                            seen.append((time.monotonic(), r.version))
                    except FlowgateError as e:  # any error or timeout is a failed request
                        with lock:
                            failures.append(repr(e))

        threads = [threading.Thread(target=load, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()

        def wait_for(predicate, what, timeout_s=60):
            end = time.monotonic() + timeout_s
            while time.monotonic() < end:
                if predicate():
                    return
                time.sleep(0.05)
            stop.set()
            raise AssertionError(f"timed out waiting for {what}; log:\n{log.read_text()[-3000:]}")

        try:
            wait_for(lambda: len(seen) >= 20, "replies from v1")
            flip(current, v2)
            proc.send_signal(signal.SIGHUP)
            wait_for(lambda: any(v == "reload-b" for _, v in seen[-10:]), "replies from v2")
            flip(current, bad)
            proc.send_signal(signal.SIGHUP)
            wait_for(lambda: "refused" in log.read_text(), "the refusal in the log")
            n = len(seen)
            wait_for(lambda: len(seen) >= n + 20, "replies after the refused reload")
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
        assert failures == []
        versions = [v for _, v in seen]
        switch = versions.index("reload-b")
        assert set(versions[:switch]) == {"reload-a"}
        # After the switch no reply comes from the old version except requests already admitted
        # (at most one per client), and none ever from the corrupt one.
        assert versions[switch:].count("reload-a") <= 4
        assert "reload-bad" not in versions
        assert set(versions[-20:]) == {"reload-b"}
        text = log.read_text()
        assert "reload of" in text and "refused" in text and "policy.safetensors" in text
        assert Client(endpoint).info()["models"][0]["version"] == "reload-b"
