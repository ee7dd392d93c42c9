"""CloudWatch Logs on Lamina's port: the reading side (groups, streams, events, filtering).

Operations follow botocore's ``logs`` model and AWS's error codes and messages; paging tokens
are opaque strings as on AWS. GetLogEvents tokens are ``f/<position>/s`` (forward) and
``b/<position>/s`` (backward) where a position is an event's (timestamp, id): a forward read
at the end of a stream hands back the token it was given, which is how clients (``aws logs
tail --follow``, boto3 loops) know to wait and ask again.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from typing import Any

from lamina.api.app import Handler, JsonError, JsonService, RequestContext
from lamina.api.wire import ServiceModel
from lamina.telemetry import filter_pattern
from lamina.telemetry.logs import GroupInfo, LogStore, StoredEvent, StreamInfo

RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192,
                  2557, 2922, 3288, 3653)
MAX_EVENTS = 10_000
SCAN_BATCH = 1_000
SCAN_BUDGET = 200_000  # events one FilterLogEvents call examines before it hands back a token
_POSITION = re.compile(r"([fb])/(\d{19})(\d{19})/s")
_GROUP_ARN = re.compile(r"arn:aws[\w-]*:logs:[^:]*:\d*:log-group:([^:]+)(?::\*)?")


def _invalid(message: str) -> JsonError:
    return JsonError("InvalidParameterException", message)


def _no_group() -> JsonError:
    return JsonError("ResourceNotFoundException", "The specified log group does not exist.")


def _no_stream() -> JsonError:
    return JsonError("ResourceNotFoundException", "The specified log stream does not exist.")


def _encode(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode()


def _decode(token: str, prefix: str) -> str:
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise _invalid("The specified nextToken is invalid.") from exc
    if not text.startswith(prefix):
        raise _invalid("The specified nextToken is invalid.")
    return text[len(prefix):]


def _page(items: list[Any], params: dict[str, Any], default_limit: int) -> tuple[list[Any], str | None]:
    """One page of an in-memory listing with an opaque offset token."""
    start = 0
    if params.get("nextToken"):
        offset = _decode(params["nextToken"], "o:")
        if not offset.isdigit():
            raise _invalid("The specified nextToken is invalid.")
        start = int(offset)
    end = start + int(params.get("limit") or default_limit)
    return items[start:end], (_encode(f"o:{end}") if end < len(items) else None)


class LogsHandlers:
    def __init__(self, store: LogStore, *, region: str, account_id: str) -> None:
        self.store = store
        self.region = region
        self.account_id = account_id

    def handlers(self) -> dict[str, Handler]:
        return {
            "CreateLogGroup": self.create_log_group,
            "DeleteLogGroup": self.delete_log_group,
            "DescribeLogGroups": self.describe_log_groups,
            "PutRetentionPolicy": self.put_retention_policy,
            "DeleteRetentionPolicy": self.delete_retention_policy,
            "CreateLogStream": self.create_log_stream,
            "DeleteLogStream": self.delete_log_stream,
            "DescribeLogStreams": self.describe_log_streams,
            "PutLogEvents": self.put_log_events,
            "GetLogEvents": self.get_log_events,
            "FilterLogEvents": self.filter_log_events,
        }

    # -- groups -----------------------------------------------------------------------------

    def _arn(self, group: str) -> str:
        return f"arn:aws:logs:{self.region}:{self.account_id}:log-group:{group}"

    def _group_shape(self, g: GroupInfo) -> dict[str, Any]:
        shape: dict[str, Any] = {
            "logGroupName": g.name, "creationTime": g.created, "metricFilterCount": 0,
            "arn": self._arn(g.name) + ":*", "logGroupArn": self._arn(g.name),
            "storedBytes": g.stored_bytes, "logGroupClass": "STANDARD",
        }
        if g.retention_days is not None:
            shape["retentionInDays"] = g.retention_days
        return shape

    def _group_name(self, params: dict[str, Any]) -> str:
        """The group named by ``logGroupName`` or ``logGroupIdentifier`` (a name or an ARN); it must exist."""
        name, ident = params.get("logGroupName"), params.get("logGroupIdentifier")
        if name and ident:
            raise _invalid("LogGroup name and LogGroup ARN are mutually exclusive parameters.")
        if ident:
            arn = _GROUP_ARN.fullmatch(ident)
            name = arn.group(1) if arn else ident
        if not name:
            raise _invalid("Should provide either logGroupName or logGroupIdentifier.")
        if self.store.group(name) is None:
            raise _no_group()
        return str(name)

    async def create_log_group(self, ctx: RequestContext, params: dict[str, Any]) -> None:
        if not self.store.create_group(params["logGroupName"]):
            raise JsonError("ResourceAlreadyExistsException", "The specified log group already exists")

    async def delete_log_group(self, ctx: RequestContext, params: dict[str, Any]) -> None:
        if not self.store.delete_group(params["logGroupName"]):
            raise _no_group()

    async def describe_log_groups(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        prefix, contains = params.get("logGroupNamePrefix") or "", params.get("logGroupNamePattern") or ""
        if prefix and contains:
            raise _invalid("LogGroupNamePrefix and LogGroupNamePattern are mutually exclusive parameters.")
        groups = self.store.groups(prefix=prefix, contains=contains)
        wanted = params.get("logGroupIdentifiers")
        if wanted:
            names = {(_GROUP_ARN.fullmatch(w) or re.match(r"(.*)", w)).group(1) for w in wanted}  # type: ignore[union-attr]
            groups = [g for g in groups if g.name in names]
        page, token = _page(groups, params, 50)
        out: dict[str, Any] = {"logGroups": [self._group_shape(g) for g in page]}
        if token:
            out["nextToken"] = token
        return out

    async def put_retention_policy(self, ctx: RequestContext, params: dict[str, Any]) -> None:
        days = params["retentionInDays"]
        if days not in RETENTION_DAYS:
            raise _invalid(
                f"1 validation error detected: Value '{days}' at 'retentionInDays' failed to satisfy "
                f"constraint: Member must satisfy enum value set: [{', '.join(map(str, RETENTION_DAYS))}]"
            )
        if not await asyncio.to_thread(self.store.set_retention, params["logGroupName"], days):
            raise _no_group()

    async def delete_retention_policy(self, ctx: RequestContext, params: dict[str, Any]) -> None:
        if not self.store.set_retention(params["logGroupName"], None):
            raise _no_group()

    # -- streams ----------------------------------------------------------------------------

    def _stream_shape(self, group: str, s: StreamInfo) -> dict[str, Any]:
        shape: dict[str, Any] = {
            "logStreamName": s.name, "creationTime": s.created, "storedBytes": 0,
            "arn": f"{self._arn(group)}:log-stream:{s.name}",
        }
        if s.first_event is not None:
            shape.update(firstEventTimestamp=s.first_event, lastEventTimestamp=s.last_event,
                         lastIngestionTime=s.last_ingestion)
        return shape

    async def create_log_stream(self, ctx: RequestContext, params: dict[str, Any]) -> None:
        group = self._group_name(params)
        if not self.store.create_stream(group, params["logStreamName"]):
            raise JsonError("ResourceAlreadyExistsException", "The specified log stream already exists")

    async def delete_log_stream(self, ctx: RequestContext, params: dict[str, Any]) -> None:
        group = self._group_name(params)
        if not self.store.delete_stream(group, params["logStreamName"]):
            raise _no_stream()

    async def describe_log_streams(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        group = self._group_name(params)
        prefix = params.get("logStreamNamePrefix") or ""
        by_time = params.get("orderBy") == "LastEventTime"
        if by_time and prefix:
            raise _invalid("Cannot order by LastEventTime with a logStreamNamePrefix.")
        streams = self.store.stream_infos(group, prefix)
        if by_time:
            streams.sort(key=lambda s: (s.last_event or 0, s.name))
        if params.get("descending"):
            streams.reverse()
        page, token = _page(streams, params, 50)
        out: dict[str, Any] = {"logStreams": [self._stream_shape(group, s) for s in page]}
        if token:
            out["nextToken"] = token
        return out

    # -- events -----------------------------------------------------------------------------

    async def put_log_events(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        group = self._group_name(params)
        stream = params["logStreamName"]
        if not self.store.has_stream(group, stream):
            raise _no_stream()
        events = [(int(e["timestamp"]), str(e["message"])) for e in params["logEvents"]]
        if any(a[0] > b[0] for a, b in zip(events, events[1:], strict=False)):
            raise _invalid("Log events in a single PutLogEvents request must be in chronological order.")
        self.store.append(group, stream, events)
        await asyncio.to_thread(self.store.flush, int(time.time() * 1000))
        return {"nextSequenceToken": f"{self.store.last_event_id(group, stream):056d}"}

    async def get_log_events(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        group = self._group_name(params)
        stream = params["logStreamName"]
        if not self.store.has_stream(group, stream):
            raise _no_stream()
        limit = int(params.get("limit") or MAX_EVENTS)
        token = params.get("nextToken")
        if token:
            parsed = _POSITION.fullmatch(token)
            if parsed is None:
                raise _invalid("The specified nextToken is invalid.")
            position = (int(parsed.group(2)), int(parsed.group(3)))
            forward = parsed.group(1) == "f"
        else:
            position, forward = None, bool(params.get("startFromHead"))
        events = await asyncio.to_thread(
            self.store.stream_events, group, stream, start=params.get("startTime"), end=params.get("endTime"),
            limit=limit,
            after=position if forward else None, before=None if forward else position, from_tail=not forward,
        )
        if events:
            first, last = (events[0].timestamp, events[0].id), (events[-1].timestamp, events[-1].id)
        else:
            first = last = position or (0, 0)
        return {
            "events": [
                {"timestamp": e.timestamp, "message": e.message, "ingestionTime": e.ingestion_time}
                for e in events
            ],
            "nextForwardToken": f"f/{last[0]:019d}{last[1]:019d}/s",
            "nextBackwardToken": f"b/{first[0]:019d}{first[1]:019d}/s",
        }

    async def filter_log_events(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        group = self._group_name(params)
        names, prefix = params.get("logStreamNames"), params.get("logStreamNamePrefix") or ""
        if names and prefix:
            raise _invalid("logStreamNames and logStreamNamePrefix are mutually exclusive parameters.")
        pattern = filter_pattern.parse(params.get("filterPattern"))
        after: tuple[int, int] | None = None
        if params.get("nextToken"):
            ts, _, event_id = _decode(params["nextToken"], "c:").partition(":")
            if not (ts.lstrip("-").isdigit() and event_id.isdigit()):
                raise _invalid("The specified nextToken is invalid.")
            after = (int(ts), int(event_id))
        limit = int(params.get("limit") or MAX_EVENTS)
        found, after, more = await asyncio.to_thread(
            self._scan, group, names, prefix, params.get("startTime"), params.get("endTime"), after, limit,
            pattern,
        )
        out: dict[str, Any] = {
            "events": [
                {"logStreamName": e.stream, "timestamp": e.timestamp, "message": e.message,
                 "ingestionTime": e.ingestion_time, "eventId": f"{e.id:056d}"}
                for e in found
            ],
            "searchedLogStreams": [],
        }
        if more and after is not None:
            out["nextToken"] = _encode(f"c:{after[0]}:{after[1]}")
        return out

    def _scan(
        self, group: str, names: list[str] | None, prefix: str, start: int | None, end: int | None,
        after: tuple[int, int] | None, limit: int, pattern: filter_pattern.FilterPattern,
    ) -> tuple[list[StoredEvent], tuple[int, int] | None, bool]:
        """Matching events in time order, the cursor after the last examined, whether more may follow."""
        found: list[StoredEvent] = []
        examined = 0
        while True:
            batch = self.store.scan(group, streams=names, prefix=prefix, start=start, end=end, after=after,
                                    limit=SCAN_BATCH)
            for event in batch:
                after = (event.timestamp, event.id)
                if pattern.matches(event.message):
                    found.append(event)
                    if len(found) == limit:
                        return found, after, True
            examined += len(batch)
            if len(batch) < SCAN_BATCH:
                return found, after, False
            if examined >= SCAN_BUDGET:
                return found, after, True


def logs_service(handlers: dict[str, Handler]) -> JsonService:
    """The CloudWatch Logs JSON service to mount on the App (``json_services={"logs": ...}``)."""
    return JsonService(model=ServiceModel("logs", "2014-03-28"), target_prefix="Logs_20140328", handlers=handlers)
