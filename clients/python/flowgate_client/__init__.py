"""flowgate_client: numpy-in/numpy-out client for the flowgate inference server (protocol v1).

    from flowgate_client import Client
    with Client("tcp://127.0.0.1:5555") as c:
        r = c.act(obs)            # r.action, r.confidence, r.reliable, r.energy, r.q, r.timing
"""
from .client import (ActResult, Client, DEFAULT_ENDPOINT, DEFAULT_TELEMETRY, ERROR_CODES, FlowgateError,
                     FlowgateTimeout, Monitor, MonitorEvent)
from .codec import decode_ndarray, encode_ndarray
from .curve import CurveCredentials, KeyFileError, KeyPair, read_keypair, read_public_key

__version__ = "0.1.0"
__all__ = ["ActResult", "Client", "DEFAULT_ENDPOINT", "DEFAULT_TELEMETRY", "ERROR_CODES", "FlowgateError",
           "FlowgateTimeout", "Monitor", "MonitorEvent", "decode_ndarray", "encode_ndarray", "__version__",
           "CurveCredentials", "KeyFileError", "KeyPair", "read_keypair", "read_public_key"]
