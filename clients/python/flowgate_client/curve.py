"""CURVE key files, the same format `flowgate keygen` writes and the server reads.

Format (UTF-8 text, one item per line):

* blank lines and lines starting with ``#`` are ignored;
* ``public=KEY`` and ``secret=KEY`` (spaces around ``=`` and double quotes around KEY allowed);
* a bare line of exactly 40 Z85 characters is a public key (an allowlist may be a plain list; Z85
  includes ``=``, so a line is an entry only when the text before its first ``=`` is an entry name);
* anything else is an error naming the file and line.

KEY is the 40-character Z85 text of a 32-byte Curve25519 key.  ``flowgate keygen NAME`` writes
``NAME.pub`` (``public=``) and ``NAME.secret`` (``public=`` and ``secret=``, mode 0600).
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import List, Optional, Tuple

import zmq

Z85_ALPHABET = set("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#")


ENTRY_NAMES = ("public", "public-key", "secret", "secret-key")


class KeyFileError(ValueError):
    """A key file that cannot be used; the message names the file and the problem."""

    def __init__(self, path, problem: str):
        super().__init__(f"CURVE key file {path}: {problem}")
        self.path = str(path)
        self.problem = problem


@dataclass(frozen=True)
class KeyPair:
    public: bytes  # 40-byte Z85
    secret: bytes  # 40-byte Z85


def is_z85_key(s: str) -> bool:
    return len(s) == 40 and all(c in Z85_ALPHABET for c in s)


def parse(text: str, path="<text>") -> Tuple[List[str], List[str]]:
    """(public keys, secret keys) found in key file text."""
    publics: List[str] = []
    secrets: List[str] = []
    for n, raw in enumerate(text.split("\n"), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        # Z85 has '=' in its alphabet: a line is an entry only when the text before its first '='
        # is an entry name (or the line is not a bare key).
        name, _, value = line.partition("=")
        name, value = name.strip().lower(), value.strip()
        if "=" in line and (name in ENTRY_NAMES or not is_z85_key(line)):
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            if not is_z85_key(value):
                raise KeyFileError(path, f"line {n}: '{name}' is not a 40-character Z85 key")
            if name in ("public", "public-key"):
                publics.append(value)
            elif name in ("secret", "secret-key"):
                secrets.append(value)
            else:
                raise KeyFileError(path, f"line {n}: unknown entry '{name}' (expected public= or secret=)")
        elif len(line) == 40:
            if not is_z85_key(line):
                raise KeyFileError(path, f"line {n}: not a valid Z85 key")
            publics.append(line)
        else:
            raise KeyFileError(path, f"line {n}: expected 'public=KEY', 'secret=KEY' or a bare 40-character Z85 key")
    return publics, secrets


def _read(path) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read((1 << 20) + 1)
    except FileNotFoundError:
        raise KeyFileError(path, "does not exist") from None
    except OSError as e:
        raise KeyFileError(path, f"cannot be read: {e.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise KeyFileError(path, "is not UTF-8 text") from None


def read_keypair(path) -> KeyPair:
    """A keypair file (``NAME.secret``); refused when group or others can access it."""
    text = _read(path)
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        raise KeyFileError(path, f"holds a secret key but is accessible to group or others (mode {mode:o}); run: chmod 600 {path}")
    publics, secrets = parse(text, path)
    if len(secrets) != 1:
        raise KeyFileError(path, "no 'secret=' line (is this a public key file?)" if not secrets
                           else f"{len(secrets)} 'secret=' lines; expected one")
    derived = zmq.curve_public(secrets[0].encode()).decode()
    if len(publics) > 1:
        raise KeyFileError(path, "more than one 'public=' line")
    if publics and publics[0] != derived:
        raise KeyFileError(path, "'public=' does not belong to the 'secret=' key in the same file")
    return KeyPair(public=derived.encode(), secret=secrets[0].encode())


def read_public_key(path) -> bytes:
    """One public key (Z85 bytes), e.g. the server's ``NAME.pub``."""
    publics, secrets = parse(_read(path), path)
    if secrets:
        return read_keypair(path).public
    if len(publics) != 1:
        raise KeyFileError(path, "no public key" if not publics else "more than one public key")
    return publics[0].encode()


def _key_bytes(k) -> bytes:
    """A Z85 key given as str/bytes, or a path to a key file."""
    if isinstance(k, bytes) and len(k) == 40:
        return k
    if isinstance(k, str) and is_z85_key(k) and not os.path.exists(k):
        return k.encode()
    return read_public_key(k)


@dataclass(frozen=True)
class CurveCredentials:
    """What a client needs to talk to a CURVE server: its public key and the client's keypair."""
    server_public: bytes
    client: KeyPair

    @classmethod
    def load(cls, server_key, client_key) -> "CurveCredentials":
        """``server_key``: the server's public key file (or its Z85 text); ``client_key``: the
        client's keypair file (``NAME.secret``) or a KeyPair."""
        pair = client_key if isinstance(client_key, KeyPair) else read_keypair(client_key)
        return cls(server_public=_key_bytes(server_key), client=pair)

    def apply(self, sock: zmq.Socket) -> None:
        """Make ``sock`` a CURVE client (call before connect)."""
        sock.setsockopt(zmq.CURVE_SERVERKEY, self.server_public)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.client.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.client.secret)


def credentials(server_key=None, client_key=None) -> Optional[CurveCredentials]:
    """CurveCredentials when both are given, None when neither; an error for only one."""
    if server_key is None and client_key is None:
        return None
    if server_key is None or client_key is None:
        raise ValueError("CURVE needs both the server's public key and the client's keypair (server_key and client_key)")
    return CurveCredentials.load(server_key, client_key)
