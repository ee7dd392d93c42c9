"""Wire helpers for Lamina's in-sandbox Python runtime: a tiny HTTP/1.1 client and JSON.

Both exist to keep cold start short. ``http.client`` pulls in email parsing and ``ssl``-adjacent
modules; ``json`` pulls in ``re``. The Runtime API needs neither: one keep-alive connection to
a loopback server that we wrote ourselves (or AWS's), three request shapes, and the C JSON
accelerator that ``json`` itself would end up calling.

Any failure of the Runtime API connection raises :class:`RuntimeApiGone`; the runtime then
exits non-zero, because an env that lost its Runtime API can do nothing useful.
"""

import _socket

try:
    import _json
except ImportError:  # an interpreter without the accelerator: pay for the pure-Python json
    _json = None  # type: ignore[assignment]

_MAX_HEAD = 64 * 1024


class RuntimeApiGone(Exception):
    """The Runtime API connection broke or answered something that is not HTTP."""


# -- JSON ---------------------------------------------------------------------------------


class _ScanContext:
    """The attributes the C scanner reads from a JSONDecoder, with json.loads' defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: "dict[str, str]" = {}

    @staticmethod
    def parse_constant(name: str) -> float:
        return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}[name]


_WS = " \t\n\r"
_scan = _json.make_scanner(_ScanContext()) if _json is not None else None  # type: ignore[arg-type]


def loads(text: str) -> object:
    """json.loads(text) without importing json, unless the text is not valid JSON."""
    if _scan is not None:
        start = len(text) - len(text.lstrip(_WS))
        try:
            value, end = _scan(text, start)
        except Exception:  # StopIteration, or the scanner failing to build its error
            value, end = None, -1
        if end >= 0 and not text[end:].strip(_WS):
            return value
    import json  # invalid input (or no accelerator): let json produce its exact error

    return json.loads(text)


def _default(obj: object) -> object:
    if type(obj).__name__ == "Decimal" and type(obj).__module__ in ("decimal", "_decimal"):
        # awslambdaric (simplejson) writes Decimals as bare numbers; keep their value.
        return int(obj) if obj == obj.to_integral_value() else float(obj)  # type: ignore[attr-defined,call-overload,arg-type]
    raise TypeError("Object of type %s is not JSON serializable" % type(obj).__name__)


def dumps(obj: object) -> str:
    """json.dumps(obj) with its default separators, ensure_ascii and allow_nan."""
    if _json is None:
        import json

        return json.dumps(obj, default=_default)
    encoder = _json.make_encoder(
        {}, _default, _json.encode_basestring_ascii, None, ": ", ", ", False, False, True
    )
    return "".join(encoder(obj, 0))


# -- HTTP ---------------------------------------------------------------------------------


class RuntimeClient:
    """A keep-alive HTTP/1.1 client for exactly the Runtime API's requests."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self._addr = (host.strip("[]") or "127.0.0.1", int(port))
        self._host_header = address.encode("ascii")
        self._sock: _socket.socket | None = None
        self._buf = b""

    def _connect(self) -> "_socket.socket":
        sock = self._sock
        if sock is None:
            family = _socket.AF_INET6 if ":" in self._addr[0] else _socket.AF_INET
            sock = _socket.socket(family, _socket.SOCK_STREAM)
            try:
                sock.connect(self._addr)
                sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            except OSError as exc:
                sock.close()
                raise RuntimeApiGone("connect %s:%d: %s" % (self._addr + (exc,))) from exc
            self._sock = sock
        return sock

    def next(self) -> "tuple[dict[str, str], bytes]":
        """GET /next: block until an event arrives; return (lower-cased headers, body)."""
        status, headers, body = self._request(
            b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: %s\r\n\r\n"
            % self._host_header, b"")
        if status != 200:
            raise RuntimeApiGone("GET /next answered %d: %r" % (status, body[:200]))
        return headers, body

    def get(self, path: str) -> "tuple[int, dict[str, str], bytes]":
        """A plain GET (Lamina's standby assignment); returns (status, headers, body)."""
        return self._request(
            b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path.encode("latin-1"), self._host_header), b"")

    def post(self, path: str, body: bytes, content_type: str,
             extra: "dict[str, str] | None" = None) -> int:
        """POST a response or error document; return the HTTP status."""
        head = "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n" % (
            path, self._host_header.decode(), content_type, len(body))
        for name, value in (extra or {}).items():
            head += "%s: %s\r\n" % (name, value.replace("\r", " ").replace("\n", " "))
        status, _, answer = self._request((head + "\r\n").encode("utf-8"), body)
        if status >= 300:
            import sys

            sys.stderr.write("lamina runtime: POST %s answered %d: %s\n"
                             % (path, status, answer[:500].decode("utf-8", "replace")))
        return status

    def _request(self, head: bytes, body: bytes) -> "tuple[int, dict[str, str], bytes]":
        sock = self._connect()
        try:
            if len(body) < 65536:
                sock.sendall(head + body)
            else:
                sock.sendall(head)
                sock.sendall(body)
            return self._read_response(sock)
        except OSError as exc:
            self._sock = None
            sock.close()
            raise RuntimeApiGone(str(exc)) from exc

    def _fill(self, sock: "_socket.socket") -> None:
        chunk = sock.recv(262144)
        if not chunk:
            raise RuntimeApiGone("connection closed by the Runtime API")
        self._buf += chunk

    def _read_response(self, sock: "_socket.socket") -> "tuple[int, dict[str, str], bytes]":
        while True:
            end = self._buf.find(b"\r\n\r\n")
            while end < 0:
                if len(self._buf) > _MAX_HEAD:
                    raise RuntimeApiGone("response head too large")
                self._fill(sock)
                end = self._buf.find(b"\r\n\r\n")
            lines = self._buf[:end].decode("latin-1").split("\r\n")
            self._buf = self._buf[end + 4:]
            try:
                status = int(lines[0].split(" ", 2)[1])
            except (IndexError, ValueError):
                raise RuntimeApiGone("not an HTTP response: %r" % lines[0][:100]) from None
            if status != 100:  # skip interim responses
                break
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = self._read_chunked(sock)
        else:
            body = self._read_exact(sock, int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self._sock = None
            sock.close()
        return status, headers, body

    def _read_exact(self, sock: "_socket.socket", size: int) -> bytes:
        while len(self._buf) < size:
            self._fill(sock)
        body, self._buf = self._buf[:size], self._buf[size:]
        return body

    def _read_chunked(self, sock: "_socket.socket") -> bytes:
        parts: list[bytes] = []
        while True:
            while b"\r\n" not in self._buf:
                self._fill(sock)
            line, _, self._buf = self._buf.partition(b"\r\n")
            size = int(line.split(b";", 1)[0], 16)
            if size == 0:
                while not self._buf.startswith(b"\r\n"):  # skip trailers
                    while b"\r\n" not in self._buf:
                        self._fill(sock)
                    self._buf = self._buf.partition(b"\r\n")[2]
                self._buf = self._buf[2:]
                return b"".join(parts)
            parts.append(self._read_exact(sock, size + 2)[:-2])


ASSIGNMENT_PATH = "/2018-06-01/runtime/lamina/assignment"


STANDBY_FLAG = "--lamina-standby"


def await_assignment(client: RuntimeClient) -> "dict[str, str] | None":
    """In a standby sandbox (started with --lamina-standby: a flag, not a variable, so the
    function's environment holds nothing of it), block until the worker assigns a function;
    return that function's complete environment. None when not started as a standby."""
    import sys

    if STANDBY_FLAG not in sys.argv[1:]:
        return None
    status, _, body = client.get(ASSIGNMENT_PATH)
    if status != 200:
        raise RuntimeApiGone("assignment answered %d" % status)
    doc = loads(body.decode("utf-8"))
    env = doc["env"] if isinstance(doc, dict) else None
    if not isinstance(env, dict):
        raise RuntimeApiGone("malformed assignment")
    return {str(k): str(v) for k, v in env.items()}
