"""Marker/MaxItems pagination of ListFunctions, ListVersionsByFunction and ListAliases.

The session server is shared, so these tests page through everything and check that their own
functions each appear exactly once, rather than counting the whole listing.
"""

from __future__ import annotations

import uuid
from typing import Any

from test_compat_support import Functions, make_zip, wait_updated


def _page_all(call: Any, key: str, page_size: int, **params: Any) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    marker: str | None = None
    for _ in range(1000):
        kwargs = dict(params, MaxItems=page_size)
        if marker:
            kwargs["Marker"] = marker
        response = call(**kwargs)
        pages.append(response[key])
        marker = response.get("NextMarker")
        if not marker:
            return pages
    raise AssertionError("pagination never ended")


def test_list_functions_pages_with_marker_and_max_items(lam: Any, functions: Functions) -> None:
    prefix = f"page-{uuid.uuid4().hex[:8]}"
    names = {f"{prefix}-{i}" for i in range(5)}
    for name in sorted(names):
        functions.create(name, wait=False)

    pages = _page_all(lam.list_functions, "Functions", 2)

    assert all(len(page) <= 2 for page in pages)
    assert len(pages) >= 3
    seen = [f["FunctionName"] for page in pages for f in page]
    assert len(seen) == len(set(seen)), "a function appeared on two pages"
    assert names <= set(seen)


def test_list_functions_paginator(lam: Any, functions: Functions) -> None:
    prefix = f"pager-{uuid.uuid4().hex[:8]}"
    names = {f"{prefix}-{i}" for i in range(3)}
    for name in sorted(names):
        functions.create(name, wait=False)

    paginator = lam.get_paginator("list_functions")
    pages = list(paginator.paginate(PaginationConfig={"PageSize": 1}))

    assert all(len(p["Functions"]) <= 1 for p in pages)
    seen = [f["FunctionName"] for p in pages for f in p["Functions"]]
    assert len(seen) == len(set(seen))
    assert names <= set(seen)


def test_list_functions_without_max_items_returns_at_most_50(lam: Any) -> None:
    response = lam.list_functions()
    assert len(response["Functions"]) <= 50


def test_list_versions_by_function_pages(lam: Any, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name, Publish=True)
    for i in range(2):
        lam.update_function_code(FunctionName=fn_name,
                                 ZipFile=make_zip({"index.py": f"X = {i}\n"}))
        wait_updated(lam, fn_name)
        lam.publish_version(FunctionName=fn_name)

    pages = _page_all(lam.list_versions_by_function, "Versions", 1, FunctionName=fn_name)

    assert [len(p) for p in pages] == [1, 1, 1, 1]
    assert [v["Version"] for p in pages for v in p] == ["$LATEST", "1", "2", "3"]


def test_list_aliases_pages(lam: Any, functions: Functions, fn_name: str) -> None:
    functions.create(fn_name, Publish=True)
    for alias in ("a1", "a2", "a3"):
        lam.create_alias(FunctionName=fn_name, Name=alias, FunctionVersion="1")

    pages = _page_all(lam.list_aliases, "Aliases", 2, FunctionName=fn_name)

    assert [len(p) for p in pages] == [2, 1]
    assert sorted(a["Name"] for p in pages for a in p) == ["a1", "a2", "a3"]
