"""Presigned download URLs for code (GetFunction's Code.Location) and layers (Content.Location).

The URLs are SigV4 query-signed with a platform key that can sign nothing else, valid for a
few minutes, and served on ``/_lamina/code/<function>/<version>`` and
``/_lamina/layer/<layer>/<version>`` without further authentication, like S3's presigned URLs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from urllib.parse import quote, unquote

from lamina.api import sigv4
from lamina.api.lambda_layers import LAYER_PATH_PREFIX, layer_path_for
from lamina.api.lambda_layers import download as layer_download
from lamina.control.functions import Functions
from lamina.control.layers import Layers
from lamina.errors import AccessDenied


def code_path_for(name: str, version: str) -> str:
    return f"/_lamina/code/{quote(name, safe='')}/{quote(version, safe='')}"


class Downloads:
    def __init__(
        self, functions: Functions, layers: Layers, key: sigv4.SecretKey, *, region: str,
        expires: int, skew: timedelta, clock: Callable[[], datetime],
    ) -> None:
        self.functions = functions
        self.layers = layers
        self.key = key
        self.region = region
        self.expires = expires
        self.clock = clock
        self.verifier = sigv4.Verifier(lambda k: key if k == key.access_key_id else None, clock, skew=skew)

    def _presign(self, endpoint: str, path: str) -> str:
        return sigv4.presign_url(
            method="GET", endpoint=endpoint, path=path, query={}, key=self.key,
            region=self.region, service="lambda", expires=self.expires, now=self.clock(),
        )

    def code_url(self, endpoint: str, name: str, version: str) -> str:
        return self._presign(endpoint, code_path_for(name, version))

    def layer_url(self, endpoint: str, name: str, version: int) -> str:
        return self._presign(endpoint, layer_path_for(name, version))

    async def download(self, request: sigv4.HttpRequest) -> bytes:
        """The zip a verified presigned URL names."""
        self.verifier.verify(request)
        if request.raw_path.startswith(LAYER_PATH_PREFIX):
            return await layer_download(self.layers, request.raw_path)
        parts = request.raw_path.split("/")
        if len(parts) != 5:
            raise AccessDenied("Access Denied")
        name, version = unquote(parts[3]), unquote(parts[4])
        resolved = self.functions.resolve(name, version)
        return await asyncio.to_thread(self.functions.read_code, resolved.version)
