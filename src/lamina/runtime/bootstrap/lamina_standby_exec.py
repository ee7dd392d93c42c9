"""Standby launcher for custom runtimes (provided.al2023 / provided.al2).

Started in a sandbox before its function is chosen, it waits for the worker's assignment,
then replaces itself with the function's ``bootstrap`` (from the zip, else from a layer),
run with exactly the function's environment — as AWS's provided runtimes start it.
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
import lamina_runtime_io as rio  # type: ignore[import-not-found]  # noqa: E402

del sys.path[0]

CANDIDATES = ("/var/task/bootstrap", "/opt/bootstrap")


def _init_error(client: "rio.RuntimeClient", message: str) -> int:
    doc = {"errorMessage": message, "errorType": "Runtime.InvalidEntrypoint", "stackTrace": []}
    sys.stderr.write("%s\n" % message)
    client.post("/2018-06-01/runtime/init/error", rio.dumps(doc).encode("utf-8"), "application/json",
                {"Lambda-Runtime-Function-Error-Type": "Runtime.InvalidEntrypoint"})
    return 1


def main() -> int:
    client = rio.RuntimeClient(os.environ.get("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"))
    env = rio.await_assignment(client)
    if env is None:
        env = dict(os.environ)
    for path in CANDIDATES:
        if os.path.isfile(path):
            try:
                os.execve(path, [path], env)
            except OSError as exc:
                return _init_error(client, "fork/exec %s: %s" % (path, (exc.strerror or "error").lower()))
    return _init_error(client, "Couldn't find valid bootstrap(s): [%s]" % " ".join(CANDIDATES))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except rio.RuntimeApiGone as gone:
        sys.stderr.write("lamina runtime: Runtime API connection lost: %s\n" % gone)
        os._exit(2)
