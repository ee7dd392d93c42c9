"""Lamina's Python runtime: the process that runs a function's handler inside the sandbox.

Run as ``python3 -I -S lamina_python_runtime.py``. It behaves like AWS's Python runtime
(awslambdaric): the same handler string rules, error types and messages, error JSON shape,
context object and log format, so functions and their tests do not notice the move.

Why it looks the way it does: interpreter start plus imports *is* the cold start. Nothing
heavy is imported before the handler module: HTTP is a hand-written keep-alive HTTP/1.1 client
on ``_socket``; JSON goes through the C accelerator ``_json`` directly (``json`` drags in
``re``, ~15 ms); ``logging`` (~20 ms) is configured the moment the function imports it, by a
meta-path hook, instead of being imported for everyone; ``traceback`` loads only on errors.
"""

import os
import sys

_MODULE_FILE = __file__
_HERE = os.path.dirname(os.path.abspath(_MODULE_FILE))
sys.path.insert(0, _HERE)  # -I leaves the script's folder off sys.path; the helper lives there
import lamina_runtime_io as rio  # type: ignore[import-not-found]  # noqa: E402

del sys.path[0]


# -- sys.path and stdio ---------------------------------------------------------------------


def _setup_path() -> str:
    """Put the function's code and layers ahead of the standard library, like AWS does."""
    task_root = os.environ.get("LAMBDA_TASK_ROOT", "/var/task")
    ver = "python%d.%d" % sys.version_info[:2]
    runtime_dir = os.environ.get("LAMBDA_RUNTIME_DIR", "/var/runtime")
    wanted = [task_root, "/opt/python/lib/%s/site-packages" % ver, "/opt/python", runtime_dir]
    sys.path[:] = [p for p in sys.path if p not in (_HERE, "")]  # not the function's folder
    sys.path[0:0] = [p for p in wanted if os.path.isdir(p)]
    return task_root


def _unbuffer_stdio() -> None:
    """print() must reach the log even if the env is killed at the timeout right after."""
    import io

    for name, fd in (("stdout", 1), ("stderr", 2)):
        raw = io.FileIO(fd, "w", closefd=False)
        stream = io.TextIOWrapper(raw, encoding="utf-8", errors="backslashreplace",
                                  line_buffering=False, write_through=True)
        setattr(sys, name, stream)


# -- logging, configured only if the function uses it -------------------------------------

_request_id = ""


def _configure_logging(logging: object) -> None:
    """Give the root logger AWS's text format, UTC times and the current request id."""
    lg = logging  # the module, typed loosely so this file needs no import of logging
    import time

    fmt = lg.Formatter(  # type: ignore[attr-defined]
        "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n",
        "%Y-%m-%dT%H:%M:%S",
    )
    fmt.converter = time.gmtime
    as_json = os.environ.get("AWS_LAMBDA_LOG_FORMAT") == "JSON"
    if as_json:
        fmt = _json_formatter(lg, time)

    class _RequestIdFilter(lg.Filter):  # type: ignore[name-defined,misc]
        def filter(self, record: object) -> bool:
            record.aws_request_id = _request_id  # type: ignore[attr-defined]
            return True

    class _StdoutHandler(lg.Handler):  # type: ignore[name-defined,misc]
        def emit(self, record: object) -> None:
            try:
                sys.stdout.write(self.format(record))
            except Exception:
                self.handleError(record)

    handler = _StdoutHandler()
    handler.setFormatter(fmt)
    handler.addFilter(_RequestIdFilter())
    root = lg.getLogger()  # type: ignore[attr-defined]
    root.addHandler(handler)
    level = os.environ.get("AWS_LAMBDA_LOG_LEVEL") or ("INFO" if as_json else None)
    level = {None: "", "TRACE": "DEBUG"}.get(level, level or "").upper()
    if level in lg._nameToLevel:  # type: ignore[attr-defined]
        root.setLevel(level)


def _json_formatter(lg: object, time: object) -> object:
    """LogFormat JSON: one record per line, the fields awslambdaric's JSON format writes."""
    import json

    class _JsonFormatter(lg.Formatter):  # type: ignore[name-defined,misc]
        def format(self, record: object) -> str:
            r = record  # typed loosely, like the module
            doc = {
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r.created)),  # type: ignore[attr-defined]
                "level": r.levelname,  # type: ignore[attr-defined]
                "message": r.getMessage(),  # type: ignore[attr-defined]
                "logger": r.name,  # type: ignore[attr-defined]
                "requestId": _request_id,
            }
            if r.exc_info and r.exc_info[0] is not None:  # type: ignore[attr-defined]
                exc = r.exc_info[1]  # type: ignore[attr-defined]
                doc.update(errorType=type(exc).__name__, errorMessage=str(exc),
                           stackTrace=_exception_doc(exc, _request_id)["stackTrace"])
            return json.dumps(doc, default=str) + "\n"

    return _JsonFormatter()


class _LoggingHook:
    """A meta-path finder that configures ``logging`` right after its first import."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> object:
        if name != "logging":
            return None
        sys.meta_path.remove(self)  # type: ignore[arg-type]
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find else None
            if spec is not None and spec.loader is not None:
                exec_module = spec.loader.exec_module

                def exec_and_configure(module: object) -> None:
                    exec_module(module)  # noqa: B023 (returned at once: no later iteration)
                    _configure_logging(module)

                spec.loader.exec_module = exec_and_configure
                return spec
        return None


def _install_logging_hook() -> None:
    if "logging" in sys.modules:
        _configure_logging(sys.modules["logging"])
    else:
        sys.meta_path.insert(0, _LoggingHook())  # type: ignore[arg-type]


# -- errors, in awslambdaric's shapes -----------------------------------------------------


class Fault(Exception):
    """A runtime-detected failure with an AWS error type (Runtime.ImportModuleError, ...)."""

    def __init__(self, error_type: str, msg: str, trace: "list[str] | None" = None) -> None:
        super().__init__(msg)
        self.error_type = error_type
        self.msg = msg
        self.trace = trace


def _error_doc(msg: str, etype: str, trace: "list[str] | None", request_id: str) -> "dict[str, object]":
    return {"errorMessage": msg or "", "errorType": etype or "", "requestId": request_id,
            "stackTrace": trace or []}


def _exception_doc(exc: BaseException, request_id: str) -> "dict[str, object]":
    import traceback

    frames = list(traceback.extract_tb(exc.__traceback__))
    for i, frame in enumerate(frames):  # drop the runtime's own frames, keep the user's
        if frame.filename != _MODULE_FILE:
            frames = frames[i:]
            break
    return _error_doc(str(exc), type(exc).__name__, traceback.format_list(frames), request_id)


def _log_error(doc: "dict[str, object]") -> None:
    """Write the error to the function's log the way awslambdaric's text format does."""
    line = "[ERROR]"
    if doc["errorType"]:
        line += " %s" % doc["errorType"]
    if doc["errorMessage"]:
        line += (":" if doc["errorType"] else "") + " %s" % doc["errorMessage"]
    lines = [line, "Traceback (most recent call last):"]
    for element in doc["stackTrace"]:  # type: ignore[attr-defined]
        for trace_line in element.splitlines() or [""]:
            stripped = trace_line.lstrip(" ")
            lines.append("\u00a0" * (len(trace_line) - len(stripped)) + stripped)
    sys.stdout.write("\r".join(lines) + "\n")


# -- handler loading ----------------------------------------------------------------------


def load_handler(handler: str) -> object:
    """Resolve _HANDLER ("mod.fn", "dir/mod.fn", "pkg.mod.fn") to a callable, or raise Fault."""
    try:
        modname, fname = handler.rsplit(".", 1)
    except ValueError as exc:
        raise Fault("Runtime.MalformedHandlerName", "Bad handler '%s': %s" % (handler, exc)) from None
    try:
        if modname.split(".")[0] in sys.builtin_module_names:
            raise Fault("Runtime.BuiltInModuleConflict",
                        "Cannot use built-in module %s as a handler module" % modname)
        dotted = modname.replace("/", ".")
        __import__(dotted)
        module = sys.modules[dotted]
    except ImportError as exc:
        raise Fault("Runtime.ImportModuleError",
                    "Unable to import module '%s': %s" % (modname, exc)) from None
    except SyntaxError as exc:
        trace = ['  File "%s" Line %s\n    %s' % (exc.filename, exc.lineno, exc.text)]
        raise Fault("Runtime.UserCodeSyntaxError",
                    "Syntax error in module '%s': %s" % (modname, exc), trace) from None
    try:
        return getattr(module, fname)
    except AttributeError:
        raise Fault("Runtime.HandlerNotFound",
                    "Handler '%s' missing on module '%s'" % (fname, modname)) from None


# -- the context object -------------------------------------------------------------------


class CognitoIdentity:
    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self, doc: "dict[str, object] | None") -> None:
        doc = doc or {}
        self.cognito_identity_id = doc.get("cognitoIdentityId")
        self.cognito_identity_pool_id = doc.get("cognitoIdentityPoolId")


class Client:
    __slots__ = ("installation_id", "app_title", "app_version_name", "app_version_code",
                 "app_package_name")

    def __init__(self, doc: "dict[str, object]") -> None:
        for name in self.__slots__:
            setattr(self, name, doc.get(name))


class ClientContext:
    __slots__ = ("custom", "env", "client")

    def __init__(self, doc: "dict[str, object]") -> None:
        self.custom = doc.get("custom")
        self.env = doc.get("env")
        client = doc.get("client")
        self.client = Client(client) if isinstance(client, dict) else None


class LambdaContext:
    """The ``context`` argument, with the attributes AWS's Python runtime provides."""

    def __init__(self, request_id: str, deadline_ms: int, arn: "str | None",
                 client_context: "dict[str, object] | None",
                 identity: "dict[str, object] | None") -> None:
        env = os.environ
        self.aws_request_id = request_id
        self.invoked_function_arn = arn
        self.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.memory_limit_in_mb = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.log_group_name = env.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.client_context = ClientContext(client_context) if client_context is not None else None
        self.identity = CognitoIdentity(identity)
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        import time

        left = self._deadline_ms - int(time.time() * 1000)
        return left if left > 0 else 0

    def log(self, msg: object) -> None:
        sys.stdout.write(str(msg))


def _context_json(raw: "str | None", what: str) -> "dict[str, object] | None":
    if not raw:
        return None
    try:
        value = rio.loads(raw)
    except Exception as exc:
        raise Fault("Runtime.LambdaContextUnmarshalError",
                    "Unable to parse %s JSON: %s" % (what, exc)) from None
    return value if isinstance(value, dict) else None


# -- the loop -----------------------------------------------------------------------------


def _handle(client: "rio.RuntimeClient", fn: object, headers: "dict[str, str]", body: bytes) -> None:
    global _request_id
    request_id = headers.get("lambda-runtime-aws-request-id", "")
    _request_id = request_id
    trace_id = headers.get("lambda-runtime-trace-id")
    if trace_id is not None:
        os.environ["_X_AMZN_TRACE_ID"] = trace_id
    else:
        os.environ.pop("_X_AMZN_TRACE_ID", None)
    try:
        context = LambdaContext(
            request_id, int(headers.get("lambda-runtime-deadline-ms", "0")),
            headers.get("lambda-runtime-invoked-function-arn"),
            _context_json(headers.get("lambda-runtime-client-context"), "Client Context"),
            _context_json(headers.get("lambda-runtime-cognito-identity"), "Cognito Identity"),
        )
        try:
            event = rio.loads(body.decode("utf-8")) if body else None
        except Exception as exc:
            raise Fault("Runtime.UnmarshalError", "Unable to unmarshal input: %s" % exc) from None
        result = fn(event, context)  # type: ignore[operator]
        if isinstance(result, bytes):
            payload, ctype = result, "application/unknown"
        else:
            try:
                payload, ctype = rio.dumps(result).encode("utf-8"), "application/json"
            except Exception as exc:
                raise Fault("Runtime.MarshalError", "Unable to marshal response: %s" % exc) from None
    except Fault as fault:
        doc = _error_doc(fault.msg, fault.error_type, fault.trace, request_id)
    except Exception as exc:
        doc = _exception_doc(exc, request_id)
    else:
        client.post("/2018-06-01/runtime/invocation/%s/response" % request_id, payload, ctype)
        return
    _log_error(doc)
    client.post("/2018-06-01/runtime/invocation/%s/error" % request_id,
                rio.dumps(doc).encode("utf-8"), "application/json")


def main() -> int:
    _unbuffer_stdio()
    client = rio.RuntimeClient(os.environ.get("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"))
    env = rio.await_assignment(client)  # a standby waits here, interpreter already warm
    if env is not None:
        os.environ.clear()
        os.environ.update(env)
    _setup_path()
    _install_logging_hook()
    try:
        fn = load_handler(os.environ.get("_HANDLER", ""))
    except Exception as exc:
        if isinstance(exc, Fault):
            doc = _error_doc(exc.msg, exc.error_type, exc.trace, "")
        else:  # the module raised while being imported
            doc = _exception_doc(exc, "")
        _log_error(doc)
        client.post("/2018-06-01/runtime/init/error", rio.dumps(doc).encode("utf-8"),
                    "application/json", {"Lambda-Runtime-Function-Error-Type": str(doc["errorType"])})
        return 1
    while True:
        headers, body = client.next()
        _handle(client, fn, headers, body)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except rio.RuntimeApiGone as gone:
        sys.stderr.write("lamina runtime: Runtime API connection lost: %s\n" % gone)
        os._exit(2)
