#!/usr/bin/env python3
"""Protocol-level health probes for scripts/deps (standard library only).

Each probe speaks the server's own wire protocol, so "healthy" means the server
answered a real request, not merely that a port is open:

  port   HOST PORT                 TCP connect succeeds
  kafka  HOST PORT                 ApiVersions + Metadata; at least one live broker
  cql    HOST PORT [--peers N]     OPTIONS, STARTUP, SELECT FROM system.local
                                   (--peers N: system.peers_v2 lists >= N peers)
  s3     ENDPOINT KEY SECRET [--bucket NAME]
                                   SigV4-signed ListBuckets (and create NAME if absent)

Exit status 0 = healthy; otherwise a one-line reason on stderr.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import http.client
import socket
import struct
import sys
import urllib.parse

TIMEOUT = 5.0


class ProbeError(Exception):
    pass


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ProbeError("connection closed by server")
        buf += chunk
    return buf


# --------------------------------------------------------------------------- port


def probe_port(host: str, port: int) -> str:
    with socket.create_connection((host, port), timeout=TIMEOUT):
        return f"{host}:{port} accepts connections"


# -------------------------------------------------------------------------- kafka


def _kafka_call(sock: socket.socket, api_key: int, version: int, corr: int, body: bytes) -> bytes:
    client_id = b"tidings-deps"
    header = struct.pack(">hhih", api_key, version, corr, len(client_id)) + client_id
    msg = header + body
    sock.sendall(struct.pack(">i", len(msg)) + msg)
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    resp = _recv_exact(sock, size)
    (rcorr,) = struct.unpack(">i", resp[:4])
    if rcorr != corr:
        raise ProbeError(f"kafka: correlation id mismatch {rcorr} != {corr}")
    return resp[4:]


def probe_kafka(host: str, port: int) -> str:
    with socket.create_connection((host, port), timeout=TIMEOUT) as sock:
        sock.settimeout(TIMEOUT)
        # ApiVersions v0: every broker answers it, whatever versions it dropped.
        resp = _kafka_call(sock, 18, 0, 1, b"")
        (err, n) = struct.unpack(">hi", resp[:6])
        if err != 0:
            raise ProbeError(f"kafka: ApiVersions error code {err}")
        versions = {}
        off = 6
        for _ in range(n):
            key, vmin, vmax = struct.unpack(">hhh", resp[off : off + 6])
            versions[key] = (vmin, vmax)
            off += 6
        if 3 not in versions:
            raise ProbeError("kafka: broker does not offer Metadata")
        vmin, vmax = versions[3]
        # Non-flexible Metadata versions 4..8 share the prefix we parse.
        v = min(vmax, 8)
        if v < max(vmin, 4):
            raise ProbeError(f"kafka: no usable Metadata version in {vmin}..{vmax}")
        body = struct.pack(">i", -1) + b"\x00"  # all topics, no auto-creation
        if v >= 8:
            body += b"\x00\x00"  # no authorized-operations lists
        resp = _kafka_call(sock, 3, v, 2, body)
        off = 4  # throttle_time_ms
        (nbrokers,) = struct.unpack(">i", resp[off : off + 4])
        off += 4
        brokers = []
        for _ in range(nbrokers):
            node_id, hlen = struct.unpack(">ih", resp[off : off + 6])
            off += 6
            bhost = resp[off : off + hlen].decode()
            off += hlen
            (bport, rlen) = struct.unpack(">ih", resp[off : off + 6])
            off += 6 + max(rlen, 0)
            brokers.append(f"{node_id}@{bhost}:{bport}")
        (clen,) = struct.unpack(">h", resp[off : off + 2])
        cluster = resp[off + 2 : off + 2 + clen].decode() if clen >= 0 else None
        off += 2 + max(clen, 0)
        (controller,) = struct.unpack(">i", resp[off : off + 4])
        if not brokers:
            raise ProbeError("kafka: metadata lists no live broker yet")
        if controller < 0:
            raise ProbeError("kafka: metadata has no active controller yet")
        return f"kafka cluster {cluster} brokers {','.join(brokers)} controller {controller}"


# ---------------------------------------------------------------------------- cql

CQL_VERSION = 0x04
OP_ERROR, OP_STARTUP, OP_READY, OP_AUTHENTICATE = 0x00, 0x01, 0x02, 0x03
OP_OPTIONS, OP_SUPPORTED, OP_QUERY, OP_RESULT = 0x05, 0x06, 0x07, 0x08


def _cql_string(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def _cql_call(sock: socket.socket, stream: int, opcode: int, body: bytes) -> tuple[int, bytes]:
    sock.sendall(struct.pack(">BBhBi", CQL_VERSION, 0, stream, opcode, len(body)) + body)
    hdr = _recv_exact(sock, 9)
    _ver, _flags, _stream, rop, length = struct.unpack(">BBhBi", hdr)
    payload = _recv_exact(sock, length)
    if rop == OP_ERROR:
        (code,) = struct.unpack(">i", payload[:4])
        (mlen,) = struct.unpack(">H", payload[4:6])
        raise ProbeError(
            f"cql error 0x{code:04x}: {payload[6 : 6 + mlen].decode(errors='replace')}"
        )
    return rop, payload


def _cql_rows(payload: bytes) -> list[list[bytes | None]]:
    (kind,) = struct.unpack(">i", payload[:4])
    if kind != 2:
        raise ProbeError(f"cql: expected Rows result, got kind {kind}")
    off = 4
    flags, ncols = struct.unpack(">ii", payload[off : off + 8])
    off += 8

    def read_string() -> str:
        nonlocal off
        (n,) = struct.unpack(">H", payload[off : off + 2])
        off += 2
        s = payload[off : off + n].decode()
        off += n
        return s

    def read_option() -> None:
        nonlocal off
        (tid,) = struct.unpack(">H", payload[off : off + 2])
        off += 2
        if tid == 0x0000:
            read_string()
        elif tid in (0x0020, 0x0022):
            read_option()
        elif tid == 0x0021:
            read_option()
            read_option()
        elif tid in (0x0030, 0x0031):
            raise ProbeError("cql: probe does not parse UDT/tuple columns")

    if flags & 0x0002:  # paging state
        (n,) = struct.unpack(">i", payload[off : off + 4])
        off += 4 + max(n, 0)
    if not flags & 0x0004:  # metadata present
        global_spec = bool(flags & 0x0001)
        if global_spec:
            read_string()
            read_string()
        for _ in range(ncols):
            if not global_spec:
                read_string()
                read_string()
            read_string()
            read_option()
    (nrows,) = struct.unpack(">i", payload[off : off + 4])
    off += 4
    rows = []
    for _ in range(nrows):
        row: list[bytes | None] = []
        for _ in range(ncols):
            (n,) = struct.unpack(">i", payload[off : off + 4])
            off += 4
            if n < 0:
                row.append(None)
            else:
                row.append(payload[off : off + n])
                off += n
        rows.append(row)
    return rows


def _cql_query(sock: socket.socket, stream: int, cql: str) -> list[list[bytes | None]]:
    body = struct.pack(">i", len(cql.encode())) + cql.encode() + struct.pack(">HB", 0x0001, 0)
    rop, payload = _cql_call(sock, stream, OP_QUERY, body)
    if rop != OP_RESULT:
        raise ProbeError(f"cql: unexpected opcode {rop} for QUERY")
    return _cql_rows(payload)


def probe_cql(host: str, port: int, peers: int | None) -> str:
    with socket.create_connection((host, port), timeout=TIMEOUT) as sock:
        sock.settimeout(TIMEOUT)
        rop, _ = _cql_call(sock, 1, OP_OPTIONS, b"")
        if rop != OP_SUPPORTED:
            raise ProbeError(f"cql: unexpected opcode {rop} for OPTIONS")
        startup = struct.pack(">H", 1) + _cql_string("CQL_VERSION") + _cql_string("3.0.0")
        rop, _ = _cql_call(sock, 2, OP_STARTUP, startup)
        if rop == OP_AUTHENTICATE:
            raise ProbeError("cql: server requires authentication")
        if rop != OP_READY:
            raise ProbeError(f"cql: unexpected opcode {rop} for STARTUP")
        rows = _cql_query(sock, 3, "SELECT release_version, data_center FROM system.local")
        if not rows:
            raise ProbeError("cql: system.local is empty")
        version = (rows[0][0] or b"?").decode()
        dc = (rows[0][1] or b"?").decode()
        msg = f"cassandra {version} dc {dc} at {host}:{port}"
        if peers is not None:
            prow = _cql_query(sock, 4, "SELECT peer, data_center FROM system.peers_v2")
            if len(prow) < peers:
                raise ProbeError(f"cql: system.peers_v2 lists {len(prow)} of {peers} peers")
            msg += f", {len(prow)} peer(s): " + ",".join(
                socket.inet_ntoa(r[0]) + "/" + (r[1] or b"?").decode()
                for r in prow
                if r[0] and len(r[0]) == 4
            )
        return msg


# ----------------------------------------------------------------------------- s3


def _sign(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def _s3_request(endpoint: str, key: str, secret: str, method: str, path: str) -> tuple[int, bytes]:
    url = urllib.parse.urlsplit(endpoint)
    host = url.netloc
    region, service = "us-east-1", "s3"
    now = datetime.datetime.now(datetime.UTC)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = now.strftime("%Y%m%d")
    payload_hash = hashlib.sha256(b"").hexdigest()
    headers = {"host": host, "x-amz-content-sha256": payload_hash, "x-amz-date": amz_date}
    signed = ";".join(sorted(headers))
    canonical_headers = "".join(f"{k}:{headers[k]}\n" for k in sorted(headers))
    canonical = "\n".join([method, path, "", canonical_headers, signed, payload_hash])
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    k = _sign(("AWS4" + secret).encode(), day)
    k = _sign(k, region)
    k = _sign(k, service)
    k = _sign(k, "aws4_request")
    signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={key}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )
    conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=TIMEOUT)
    try:
        conn.request(method, path, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def probe_s3(endpoint: str, key: str, secret: str, bucket: str | None) -> str:
    status, body = _s3_request(endpoint, key, secret, "GET", "/")
    if status != 200 or b"ListAllMyBucketsResult" not in body:
        raise ProbeError(f"s3: ListBuckets returned HTTP {status}: {body[:200]!r}")
    msg = f"s3 ListBuckets OK at {endpoint}"
    if bucket:
        if f"<Name>{bucket}</Name>".encode() not in body:
            status, body = _s3_request(endpoint, key, secret, "PUT", "/" + bucket)
            if status != 200:
                raise ProbeError(
                    f"s3: CreateBucket {bucket} returned HTTP {status}: {body[:200]!r}"
                )
            msg += f", created bucket {bucket}"
        else:
            msg += f", bucket {bucket} present"
    return msg


# --------------------------------------------------------------------------- main


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[0], argv[1:]
    try:
        if cmd == "port":
            out = probe_port(args[0], int(args[1]))
        elif cmd == "kafka":
            out = probe_kafka(args[0], int(args[1]))
        elif cmd == "cql":
            peers = int(args[3]) if len(args) > 3 and args[2] == "--peers" else None
            out = probe_cql(args[0], int(args[1]), peers)
        elif cmd == "s3":
            bucket = args[4] if len(args) > 4 and args[3] == "--bucket" else None
            out = probe_s3(args[0], args[1], args[2], bucket)
        else:
            print(f"unknown probe {cmd}", file=sys.stderr)
            return 2
    except (OSError, ProbeError, struct.error, IndexError, ValueError) as exc:
        print(f"{cmd}: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
