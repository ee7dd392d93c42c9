"""How each Lambda runtime starts inside a sandbox: command, read-only binds, environment.

``python3.X`` runs Lamina's own bootstrap on the host interpreter of that version, bound at
/var/lang (as on AWS), with boto3 and its dependencies bound under /var/runtime.
``provided.al2023``/``provided.al2`` run the ``bootstrap`` executable of the function's zip
(or of a layer, at /opt/bootstrap).
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

from lamina.errors import InvalidParameterValue
from lamina.runtime import BOOTSTRAP_DIR

RUNTIME_DIR = "/var/runtime"
TASK_ROOT = "/var/task"
LANG_DIR = "/var/lang"
# What AWS's Python runtime offers functions besides the standard library.
SDK_MODULES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six")

PATH = "/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin"
LD_LIBRARY_PATH = (
    "/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib"
)


@dataclass(frozen=True)
class RuntimeLaunch:
    argv: tuple[str, ...]
    binds: tuple[tuple[Path, str], ...]
    env: tuple[tuple[str, str], ...]


def _sdk_binds() -> list[tuple[Path, str]]:
    binds = []
    for name in SDK_MODULES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        binds.append((source, f"{RUNTIME_DIR}/{source.name}"))
    return binds


class Runtimes:
    """The runtimes this host can run, and how to launch each."""

    def __init__(self) -> None:
        minor = sys.version_info.minor
        self.python = f"python3.{minor}"
        prefix = Path(sys.base_prefix)
        python = f"{LANG_DIR}/bin/python3.{minor}"
        lang = ((prefix, LANG_DIR), (BOOTSTRAP_DIR, f"{RUNTIME_DIR}/lamina"))
        self._python_launch = RuntimeLaunch(
            argv=(python, "-I", "-S", f"{RUNTIME_DIR}/lamina/lamina_python_runtime.py"),
            binds=(*lang, *_sdk_binds()),
            env=(("PYTHONPATH", RUNTIME_DIR),),
        )
        # A custom runtime's standby is a small launcher that execs the zip's bootstrap once
        # the function is assigned (the interpreter it needs is the host's, at /var/lang).
        self._provided_launch = RuntimeLaunch(
            argv=(python, "-I", "-S", f"{RUNTIME_DIR}/lamina/lamina_standby_exec.py"),
            binds=lang,
            env=(),
        )

    @property
    def names(self) -> tuple[str, ...]:
        return (self.python, "provided.al2023", "provided.al2")

    def launch(self, runtime: str) -> RuntimeLaunch:
        if runtime == self.python:
            return self._python_launch
        if runtime in ("provided.al2023", "provided.al2"):
            return self._provided_launch
        raise InvalidParameterValue(f"The runtime {runtime} is not available on this Lamina host.")

    def standby_env(self, runtime: str) -> dict[str, str]:
        """The environment a standby of ``runtime`` starts with, before any function."""
        return {
            "PATH": PATH,
            "LD_LIBRARY_PATH": LD_LIBRARY_PATH,
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "LAMBDA_TASK_ROOT": TASK_ROOT,
            "LAMBDA_RUNTIME_DIR": RUNTIME_DIR,
            **dict(self.launch(runtime).env),
        }

    @staticmethod
    def execution_env(runtime: str) -> str:
        return f"AWS_Lambda_{runtime}"
