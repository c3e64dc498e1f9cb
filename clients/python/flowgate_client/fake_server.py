"""A small protocol-v1 server in Python (pyzmq) for tests and demos; no real model behind it.

It implements the wire contract of the Swift server: ROUTER socket, REQ or DEALER peers (empty
delimiter frame), msgpack maps, ndarray-map or plain-list arrays answered in the request's
encoding, ops act/info/health/stats, the error codes, and PUB telemetry
(``reliable/<model>`` / ``unreliable/<model>``).  The "policy" is a fixed linear map through tanh;
confidence is ``exp(-mean(obs^2))`` and an observation is reliable when confidence >= threshold.

    python -m flowgate_client.fake_server --endpoint tcp://127.0.0.1:5555 --obs-dim 15 --act-dim 3
"""
from __future__ import annotations

import argparse
import threading
import time
from typing import Optional

import numpy as np
import zmq

from .codec import decode_ndarray, encode_ndarray, is_ndarray_map, pack, unpack


class FakeServer(threading.Thread):
    def __init__(self, endpoint: str = "tcp://127.0.0.1:0", telemetry: Optional[str] = "tcp://127.0.0.1:0",
                 model: str = "fake", obs_dim: int = 15, act_dim: int = 3, threshold: float = 0.5,
                 drop: Optional[set] = None, delay_ms: float = 0.0, max_batch: int = 256):
        super().__init__(daemon=True)
        self.model, self.obs_dim, self.act_dim, self.threshold = model, obs_dim, act_dim, threshold
        self.drop = set(drop or ())  # 1-based request numbers whose reply is dropped
        self.delay_ms = delay_ms
        self.max_batch = max_batch
        self.requests = 0
        self.acts = 0
        self.t0 = time.time()
        rng = np.random.default_rng(0)
        self.W = rng.normal(0, 1.0 / np.sqrt(obs_dim), size=(obs_dim, act_dim))
        self._ctx = zmq.Context()
        self._router = self._ctx.socket(zmq.ROUTER)
        self._router.setsockopt(zmq.LINGER, 0)
        self._router.bind(endpoint)
        self.endpoint = self._router.getsockopt_string(zmq.LAST_ENDPOINT)
        self._pub = None
        self.telemetry_endpoint = None
        if telemetry:
            self._pub = self._ctx.socket(zmq.PUB)
            self._pub.setsockopt(zmq.LINGER, 0)
            self._pub.bind(telemetry)
            self.telemetry_endpoint = self._pub.getsockopt_string(zmq.LAST_ENDPOINT)
        self._halt = threading.Event()

    # -- lifecycle --------------------------------------------------------------------------
    def __enter__(self) -> "FakeServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(timeout=5)

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                if not self._router.poll(50, zmq.POLLIN):
                    continue
                frames = self._router.recv_multipart()
                try:
                    sep = frames.index(b"")
                except ValueError:
                    continue  # no delimiter: not a protocol v1 peer
                envelope, body = frames[:sep + 1], frames[-1]
                self.requests += 1
                reply = self.handle(body)
                if self.delay_ms:
                    time.sleep(self.delay_ms / 1000.0)
                if self.requests in self.drop:
                    continue
                self._router.send_multipart(envelope + [pack(reply)])
        finally:
            self._router.close(linger=0)
            if self._pub is not None:
                self._pub.close(linger=0)
            self._ctx.term()

    # -- protocol -----------------------------------------------------------------------------
    def model_info(self) -> dict:
        return {"name": self.model, "version": 1, "obs_dim": self.obs_dim, "act_dim": self.act_dim,
                "action_low": [-1.0] * self.act_dim, "action_high": [1.0] * self.act_dim,
                "defaults": {"steps": 4, "candidates": 8, "samples": 4},
                "limits": {"max_batch": self.max_batch, "max_steps": 64, "max_candidates": 256},
                "threshold": self.threshold}

    @staticmethod
    def error(rid, code: str, message: str) -> dict:
        return {"ok": False, "id": rid, "error": {"code": code, "message": message}}

    def handle(self, body: bytes) -> dict:
        try:
            req = unpack(body)
        except Exception as e:  # noqa: BLE001
            return self.error(None, "bad_request", f"undecodable msgpack: {e}")
        if not isinstance(req, dict):
            return self.error(None, "bad_request", "body must be a map")
        rid = req.get("id")
        op = req.get("op", "act")
        if op == "health":
            return {"ok": True, "id": rid, "ready": True, "uptime_s": time.time() - self.t0}
        if op == "info":
            return {"ok": True, "id": rid, "protocol": 1, "server_version": "fake-0.1",
                    "models": [self.model_info()]}
        if op == "stats":
            return {"ok": True, "id": rid, "requests": self.requests, "acts": self.acts,
                    "models": {self.model: {"requests": self.acts}}}
        if op != "act":
            return self.error(rid, "unknown_op", f"unknown op {op!r}")
        model = req.get("model", self.model)
        if model != self.model:
            return self.error(rid, "unknown_model", f"no model {model!r}")
        if "obs" not in req:
            return self.error(rid, "bad_request", "act needs obs")
        raw = req["obs"]
        dtype = None
        try:
            if is_ndarray_map(raw):
                dtype = raw["dtype"]
                obs = decode_ndarray(raw).astype(np.float64)
            else:
                obs = np.asarray(raw, dtype=np.float64)
        except Exception as e:  # noqa: BLE001
            return self.error(rid, "bad_request", f"bad obs: {e}")
        if obs.ndim not in (1, 2) or obs.shape[-1] != self.obs_dim:
            return self.error(rid, "shape_mismatch", f"obs shape {list(obs.shape)}, model needs [{self.obs_dim}] or [B, {self.obs_dim}]")
        batched = obs.ndim == 2
        O = obs if batched else obs[None]
        if len(O) > self.max_batch:
            return self.error(rid, "too_large", f"batch {len(O)} > {self.max_batch}")
        self.acts += 1
        seed = req.get("seed")
        act = np.tanh(O @ self.W)
        if seed is not None:  # batch observation i uses seed + i
            act = np.clip(act + 0.01 * np.stack([np.random.default_rng(int(seed) + i).standard_normal(self.act_dim)
                                                 for i in range(len(O))]), -1, 1)
        energy = np.mean(O ** 2, axis=1)
        conf = np.exp(-energy)
        reliable = conf >= self.threshold
        q = -energy
        if self._pub is not None and req.get("check", True):
            for i in range(len(O)):
                topic = ("reliable/" if reliable[i] else "unreliable/") + self.model
                self._pub.send_multipart([topic.encode(), pack({
                    "id": rid, "model": self.model, "t": time.time(), "reliable": bool(reliable[i]),
                    "confidence": float(conf[i]), "energy": float(energy[i]), "threshold": self.threshold})])

        def arr(a):
            return encode_ndarray(a, dtype) if dtype else a.tolist()
        out = {"ok": True, "id": rid, "model": self.model, "version": 1,
               "threshold": self.threshold, "timing": {"queue_us": 1, "compute_us": 2, "batch": len(O)}}
        if batched:
            out.update(action=arr(act), confidence=conf.tolist(), reliable=[bool(x) for x in reliable],
                       energy=energy.tolist(), q=q.tolist())
        else:
            out.update(action=arr(act[0]), confidence=float(conf[0]), reliable=bool(reliable[0]),
                       energy=float(energy[0]), q=float(q[0]))
        return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flowgate_client.fake_server", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--endpoint", default="tcp://127.0.0.1:5555")
    ap.add_argument("--telemetry", default="tcp://127.0.0.1:5556")
    ap.add_argument("--model", default="fake")
    ap.add_argument("--obs-dim", type=int, default=15)
    ap.add_argument("--act-dim", type=int, default=3)
    ap.add_argument("--threshold", type=float, default=0.5)
    a = ap.parse_args(argv)
    s = FakeServer(a.endpoint, a.telemetry, a.model, a.obs_dim, a.act_dim, a.threshold)
    print(f"fake flowgate server on {s.endpoint}, telemetry {s.telemetry_endpoint}", flush=True)
    s.start()
    try:
        while s.is_alive():
            s.join(1.0)
    except KeyboardInterrupt:
        s.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
