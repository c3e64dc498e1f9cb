"""Request/reply client (REQ or DEALER) with Lazy-Pirate retries, and the telemetry monitor."""
from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

import numpy as np
import zmq

from .codec import decode_arrays, encode_ndarray, pack, unpack
from .curve import credentials as _curve_credentials

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"
DEFAULT_TELEMETRY = "tcp://127.0.0.1:5556"

ERROR_CODES = ("bad_request", "shape_mismatch", "unknown_model", "unknown_op", "too_large",
               "overloaded", "deadline_exceeded", "internal")


class FlowgateError(Exception):
    """An error reply from the server (``code`` is one of ERROR_CODES) or a client-side failure."""

    def __init__(self, code: str, message: str = "", id: Any = None):
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.id = id


class FlowgateTimeout(FlowgateError):
    """No reply after every retry (code ``timeout``)."""

    def __init__(self, message: str, id: Any = None):
        super().__init__("timeout", message, id)


@dataclass
class ActResult:
    """One ``act`` reply. For a batch request every field is batched along axis 0."""
    action: np.ndarray
    confidence: Any
    reliable: Any
    energy: Any
    q: Any
    threshold: Optional[float] = None
    timing: dict = field(default_factory=dict)
    model: Optional[str] = None
    version: Any = None
    id: Any = None
    raw: dict = field(default_factory=dict, repr=False)
    #: P(failure within the model's horizon), when the model has a risk calibration.
    risk: Any = None
    #: The stream's alarm state (requests with ``stream``, models with a risk calibration).
    alarm: Any = None

    @property
    def batched(self) -> bool:
        return self.action.ndim == 2


def _as_field(v, batched: bool, kind=float):
    """Batched replies carry lists -> ndarray; single replies carry scalars -> float / bool."""
    if v is None:
        return None
    if batched:
        return np.asarray(v, dtype=bool if kind is bool else np.float64)
    if isinstance(v, (np.ndarray, list)):
        v = np.asarray(v).reshape(-1)[0]
    return kind(v)


class Client:
    """Synchronous client for protocol v1.

    ``socket_type`` "req" (default) uses a REQ socket and the Lazy-Pirate pattern: poll for the
    reply for ``timeout_ms``; on timeout close the socket with linger 0, reopen, resend, at most
    ``retries`` times, then raise FlowgateTimeout.  "dealer" sends an empty delimiter frame before
    the body and drops replies whose ``id`` does not match the pending request (late replies to
    earlier attempts).  ``encoding`` "ndarray" (default, ``dtype`` "<f4") or "plain" (lists).

    Against a CURVE server pass ``server_key`` (the server's public key file ``NAME.pub`` or its
    Z85 text) and ``client_key`` (this client's keypair file ``NAME.secret`` from ``flowgate
    keygen``, whose public key must be in the server's allowlist).  A refused or plaintext client
    gets no reply at all, so it times out (docs/operations.md).
    """

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, timeout_ms: int = 5000, retries: int = 3,
                 model: Optional[str] = None, socket_type: str = "req", encoding: str = "ndarray",
                 dtype: str = "<f4", context: Optional[zmq.Context] = None,
                 server_key=None, client_key=None):
        if socket_type not in ("req", "dealer"):
            raise ValueError("socket_type must be 'req' or 'dealer'")
        if encoding not in ("ndarray", "plain"):
            raise ValueError("encoding must be 'ndarray' or 'plain'")
        self.endpoint = endpoint
        self.timeout_ms = int(timeout_ms)
        self.retries = int(retries)
        self.model = model
        self.socket_type = socket_type
        self.encoding = encoding
        self.dtype = dtype
        self.curve = _curve_credentials(server_key, client_key)
        self._ctx = context or zmq.Context.instance()
        self._sock: Optional[zmq.Socket] = None
        self._ids = itertools.count(1)
        self._prefix = f"{os.getpid():x}-{id(self) & 0xffff:x}-"
        self.reconnects = 0

    # -- socket management -------------------------------------------------------------
    def _open(self) -> zmq.Socket:
        if self._sock is None:
            s = self._ctx.socket(zmq.REQ if self.socket_type == "req" else zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            if self.curve is not None:
                self.curve.apply(s)
            s.connect(self.endpoint)
            self._sock = s
        return self._sock

    def _reset(self) -> None:
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None
            self.reconnects += 1

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # -- request/reply --------------------------------------------------------------------
    def new_id(self) -> str:
        return self._prefix + str(next(self._ids))

    def request(self, msg: dict, timeout_ms: Optional[int] = None, retries: Optional[int] = None) -> dict:
        """Send one request map, return the reply map (ndarray maps decoded); raise on error replies."""
        msg = dict(msg)
        msg.setdefault("id", self.new_id())
        rid = msg["id"]
        body = pack(msg)
        timeout = self.timeout_ms if timeout_ms is None else int(timeout_ms)
        attempts = 1 + (self.retries if retries is None else int(retries))
        for attempt in range(attempts):
            sock = self._open()
            if self.socket_type == "req":
                sock.send(body)
            else:
                sock.send_multipart([b"", body])
            deadline = time.monotonic() + timeout / 1000.0
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not sock.poll(max(1, int(remaining * 1000)), zmq.POLLIN):
                    break
                frames = sock.recv_multipart()
                reply = self._parse(frames)
                if self.socket_type == "dealer" and reply.get("id") != rid:
                    continue  # a late reply to an earlier attempt
                if not reply.get("ok", False):
                    err = reply.get("error") or {}
                    raise FlowgateError(str(err.get("code", "internal")), str(err.get("message", "")), reply.get("id"))
                return reply
            if self.socket_type == "req":
                self._reset()  # a REQ socket that lost its reply is stuck: reopen it
        raise FlowgateTimeout(f"no reply from {self.endpoint} after {attempts} attempt(s) of {timeout} ms", rid)

    @staticmethod
    def _parse(frames) -> dict:
        body = frames[-1]
        try:
            reply = unpack(body)
        except Exception as e:  # noqa: BLE001
            raise FlowgateError("internal", f"undecodable reply: {e}") from e
        if not isinstance(reply, dict):
            raise FlowgateError("internal", "reply is not a map")
        return decode_arrays(reply)

    def _encode(self, a: np.ndarray):
        if self.encoding == "ndarray":
            return encode_ndarray(a, self.dtype)
        return np.asarray(a, dtype=np.float64).tolist()

    def act(self, obs, steps: Optional[int] = None, candidates: Optional[int] = None,
            samples: Optional[int] = None, check: bool = True, seed: Optional[int] = None,
            deadline_ms: Optional[int] = None, model: Optional[str] = None, id: Any = None,
            timeout_ms: Optional[int] = None, stream: Optional[str] = None,
            extra: Optional[dict] = None) -> ActResult:
        """Action(s) for one observation (obs_dim) or a batch (B x obs_dim).

        ``stream`` names the client's stream (one robot's episode) so that the server keeps its
        per-stream alarm state; ``extra`` adds further request keys as they are."""
        obs = np.asarray(obs, dtype=np.float64)
        if obs.ndim not in (1, 2):
            raise ValueError(f"obs must be 1-D or 2-D, got shape {obs.shape}")
        msg: dict = {"op": "act", "obs": self._encode(obs), "check": bool(check)}
        if id is not None:
            msg["id"] = id
        model = model or self.model
        for k, v in (("model", model), ("steps", steps), ("candidates", candidates), ("samples", samples),
                     ("seed", seed), ("deadline_ms", deadline_ms), ("stream", stream)):
            if v is not None:
                msg[k] = v
        for k, v in (extra or {}).items():
            if v is not None:
                msg[k] = v
        r = self.request(msg, timeout_ms=timeout_ms)
        batched = obs.ndim == 2
        action = np.asarray(r.get("action"), dtype=np.float64)
        if batched and action.ndim == 1:
            action = action.reshape(obs.shape[0], -1)
        return ActResult(
            action=action,
            confidence=_as_field(r.get("confidence"), batched),
            reliable=_as_field(r.get("reliable"), batched, bool),
            energy=_as_field(r.get("energy"), batched),
            q=_as_field(r.get("q"), batched),
            threshold=None if r.get("threshold") is None else float(r["threshold"]),
            timing=r.get("timing") or {},
            model=r.get("model"), version=r.get("version"), id=r.get("id"), raw=r,
            risk=_as_field(r.get("risk"), batched), alarm=_as_field(r.get("alarm"), batched, bool))

    def info(self, **kw) -> dict:
        return self.request({"op": "info"}, **kw)

    def health(self, **kw) -> dict:
        return self.request({"op": "health"}, **kw)

    def stats(self, **kw) -> dict:
        return self.request({"op": "stats"}, **kw)

    def wait_ready(self, timeout_s: float = 30.0, poll_ms: int = 500) -> dict:
        """Poll ``health`` until the server answers ready (or raise FlowgateTimeout)."""
        end = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < end:
            try:
                h = self.request({"op": "health"}, timeout_ms=poll_ms, retries=0)
                if h.get("ready", True):
                    return h
                last = h
            except FlowgateTimeout as e:
                last = e
            time.sleep(0.05)
        raise FlowgateTimeout(f"server at {self.endpoint} not ready after {timeout_s}s (last: {last})")


@dataclass
class MonitorEvent:
    topic: str
    id: Any
    model: Optional[str]
    t: Any
    reliable: bool
    confidence: Optional[float]
    energy: Optional[float]
    threshold: Optional[float]
    raw: dict = field(default_factory=dict, repr=False)
    stream: Optional[str] = None
    risk: Optional[float] = None
    reason: Optional[str] = None

    @property
    def kind(self) -> str:
        """reliable, unreliable, alarm or clear."""
        return self.topic.split("/", 1)[0]


class Monitor:
    """Subscriber to the server's telemetry PUB socket.

    Topics are ``reliable/<model>`` and ``unreliable/<model>`` (every observation) and
    ``alarm/<model>`` and ``clear/<model>`` (a stream's alarm raised or cleared); ``only_unreliable``
    subscribes to the unreliable prefix only, ``alarms`` to the alarm and clear prefixes only,
    ``model`` narrows to one model.  Iterating yields MonitorEvent
    and stops once no event arrived for ``timeout_ms`` (None: wait forever).  ``server_key`` and
    ``client_key`` as for Client, when the server uses CURVE.
    """

    def __init__(self, endpoint: str = DEFAULT_TELEMETRY, only_unreliable: bool = False,
                 model: Optional[str] = None, timeout_ms: Optional[int] = 1000,
                 context: Optional[zmq.Context] = None, server_key=None, client_key=None,
                 alarms: bool = False):
        self.endpoint = endpoint
        self.timeout_ms = timeout_ms
        curve = _curve_credentials(server_key, client_key)
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        if curve is not None:
            curve.apply(self._sock)
        if alarms:
            kinds = ["alarm/", "clear/"]
        else:
            kinds = ["unreliable/"] if only_unreliable else ["reliable/", "unreliable/"]
        for k in kinds:
            topic = k + model if model else k
            self._sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
        self._sock.connect(endpoint)
        self._model = model

    def recv(self, timeout_ms: Optional[int] = None) -> Optional[MonitorEvent]:
        """The next event, or None after ``timeout_ms`` (default: the monitor's timeout)."""
        t = self.timeout_ms if timeout_ms is None else timeout_ms
        while True:
            if not self._sock.poll(-1 if t is None else int(t), zmq.POLLIN):
                return None
            frames = self._sock.recv_multipart()
            if len(frames) < 2:
                continue
            topic = frames[0].decode("utf-8", "replace")
            if self._model and topic.split("/", 1)[-1] != self._model:
                continue  # prefix match on "reliable/m" would also accept "reliable/m2"
            try:
                d = decode_arrays(unpack(frames[1]))
            except Exception:  # noqa: BLE001
                continue
            if not isinstance(d, dict):
                continue
            return MonitorEvent(topic=topic, id=d.get("id"), model=d.get("model"), t=d.get("t"),
                                reliable=bool(d.get("reliable", topic.startswith("reliable/"))),
                                confidence=d.get("confidence"), energy=d.get("energy"),
                                threshold=d.get("threshold"), raw=d, stream=d.get("stream"),
                                risk=d.get("risk"), reason=d.get("reason"))

    def __iter__(self) -> Iterator[MonitorEvent]:
        while True:
            ev = self.recv()
            if ev is None:
                return
            yield ev

    def close(self) -> None:
        self._sock.close(linger=0)

    def __enter__(self) -> "Monitor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
