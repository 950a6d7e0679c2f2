"""The HTTP API, built from a :class:`~controller.runtime.service.SimService`.

Handlers never touch SUMO: writes are commands queued to the service (answered by its thread),
reads come from the state it publishes each tick. Every ``/v1`` request needs the bearer token
(401 without one, 403 with a wrong one, compared in constant time, checked first); bodies are
limited in size (413); every error is JSON ``{"error": ..., "detail": ...}`` naming what is
wrong; every rejected ``/v1`` request is written to the audit log (those refused for their token
at most once a minute, :class:`Rejections`).
"""


import asyncio
import hmac
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from concurrent.futures import Future
from importlib.resources import files
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match

from controller import MAX_ID_LENGTH, __version__
from controller.api.models import (
    ID_PATTERN,
    AuditOut,
    DispatchRequest,
    EdgePlace,
    ErrorOut,
    EscortOut,
    Health,
    PositionAccepted,
    PositionRequest,
    RouteRequest,
    SignalOut,
)
from controller.errors import GreenwaveError, RequestError
from controller.runtime.audit import KINDS
from controller.runtime.service import SimService
from controller.runtime.service_model import Cancel, Dispatch, Place, Position, Reroute, ServiceState

log = logging.getLogger("greenwave.api")
MAX_BODY_BYTES = 64 * 1024
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": what}
    for code, what in ((401, "No bearer token"), (403, "Wrong token"), (404, "Unknown id"), (409, "Conflict"),
                       (413, "Body too large"), (415, "Body not JSON"), (422, "Invalid request"),
                       (500, "Internal error (the simulation keeps running)"),
                       (503, "The simulation did not answer in time"))
}
_STATUS_NAMES = {400: "bad request", 401: "unauthorized", 403: "forbidden", 404: "not found", 405: "method not allowed",
                 409: "conflict", 413: "body too large", 415: "unsupported media type", 422: "invalid request",
                 503: "unavailable"}


class _Refused(Exception):
    """A request the guard answers itself, before the app sees it."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def _is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


class Guard:
    """Pure ASGI middleware: checks a ``/v1`` request's token first (401, 403: a request without
    one was told about its body's size or type), then limits request bodies (413), refuses
    bodies that are not JSON (415), counts responses by route, method and status."""

    def __init__(self, app: ASGIApp, service: SimService, rejections: "Rejections", token: bytes,
                 max_body_bytes: int = MAX_BODY_BYTES, routes: Sequence[BaseRoute] = ()) -> None:
        self.app = app
        self.service = service
        self.rejections = rejections
        self.token = token
        self.max_body = max_body_bytes
        self.routes = routes  # the app's, to name the route of a request refused here, before routing

    def _route(self, scope: Scope, asked: Scope) -> str:
        """The route that answered (``scope`` after the app), else the one matching the request as
        it came (``asked``: a mount, the documentation's static files, rewrites the scope's
        ``root_path``, and matching it afterwards named them "unmatched")."""
        route = scope.get("route")
        if route is None:  # (a route of that path for other methods: its own, a 405 or a 401 before it)
            matches = [(r, r.matches(asked)[0]) for r in self.routes]
            route = next((r for r, m in matches if m == Match.FULL), None) or next(
                (r for r, m in matches if m == Match.PARTIAL), None)
        return str(getattr(route, "path", "unmatched"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        asked = dict(scope)  # (as it came: the app may change the scope)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        too_large = _Refused(413, f"request body larger than {self.max_body} bytes")
        try:
            path = str(scope.get("path", ""))
            if path == "/v1" or path.startswith("/v1/"):
                refusal = token_refusal(headers.get(b"authorization"), self.token)
                if refusal is not None:
                    raise _Refused(*refusal)
            if length is not None and (not length.isdigit() or int(length) > self.max_body):
                raise too_large
            content_type = headers.get(b"content-type")
            if (scope.get("method") in ("POST", "PUT", "PATCH") and content_type is not None
                    and not _is_json(content_type) and length != b"0"):
                shown = content_type.decode("latin-1")[:60]
                raise _Refused(415, f"content-type: '{shown}' is not application/json (send the body as JSON, "
                                    "with the header Content-Type: application/json)")
            body_receive = receive
            if scope.get("method") in ("POST", "PUT", "PATCH", "DELETE"):
                # read the (small) body here, counting as it arrives: a chunked body has no length
                chunks: list[bytes] = []
                received, more = 0, True
                while more:
                    message = await receive()
                    if message["type"] != "http.request":
                        break
                    chunks.append(message.get("body", b""))
                    received += len(chunks[-1])
                    if received > self.max_body:
                        raise too_large
                    more = bool(message.get("more_body", False))
                body = b"".join(chunks)
                if content_type is None and body.strip() and scope.get("method") != "DELETE":
                    raise _Refused(415, "no content-type header: send the body as JSON, with the header "
                                        "Content-Type: application/json")
                pending = [{"type": "http.request", "body": body, "more_body": False}]

                async def replay() -> Message:
                    return pending.pop() if pending else await receive()

                body_receive = replay
            await self.app(scope, body_receive, send_counted)
        except _Refused as refused:
            if status == 0:
                self.rejections.record(scope.get("method", ""), scope.get("path", ""), refused.status, refused.detail)
                response = _error(refused.status, refused.detail)
                await response(scope, receive, send_counted)
        finally:
            self.service.metrics.request(str(scope.get("method", "")), self._route(scope, asked), status)


def _error(status: int, detail: str, errors: list[dict[str, Any]] | None = None) -> JSONResponse:
    # (a message quoting a client's text keeps it encodable: a lone surrogate is shown escaped)
    detail = detail.encode("utf-8", "backslashreplace").decode("utf-8")
    body: dict[str, Any] = {"error": _STATUS_NAMES.get(status, "error"), "detail": detail}
    if errors is not None:
        body["errors"] = errors
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


AUDIT_TEXT_MAX = 300  # characters of a rejected request's path and detail kept in the audit log


def _clip(text: str) -> str:
    return text if len(text) <= AUDIT_TEXT_MAX else f"{text[:AUDIT_TEXT_MAX]}… ({len(text)} characters)"


UNAUTHORIZED_ROW_EVERY_S = 60.0  # at most one audit row this often for requests refused for their token


class Rejections:
    """Writes the rejected ``/v1`` requests to the audit log. Those refused for their token (401,
    403) at most one row every ``UNAUTHORIZED_ROW_EVERY_S`` of wall time, saying how many more
    were refused since the last such row: anyone who can reach the port, token or not, grew the
    log by a row a request (1,000 requests, 1,000 rows). ``/metrics`` counts every one.
    Used from the event loop's thread only."""

    def __init__(self, service: SimService) -> None:
        self.service = service
        self._unauthorized_at = -math.inf  # (time.monotonic() of the last such row)
        self._unauthorized_since = 0
        self._unauthorized_last: tuple[str, str, int, str] = ("", "", 401, "")  # the last one not written

    def record(self, method: str, path: str, status: int, detail: str) -> None:
        if not (path.startswith("/v1") and 400 <= status < 600):
            return
        if status in (401, 403):
            now = time.monotonic()
            if now - self._unauthorized_at < UNAUTHORIZED_ROW_EVERY_S:
                self._unauthorized_since += 1
                self._unauthorized_last = (method, path, status, detail)
                return
            if self._unauthorized_since:
                detail = (f"{detail} ({self._unauthorized_since} more requests refused for their token since "
                          "the last such row)")
            self._unauthorized_at, self._unauthorized_since = now, 0
        service = self.service
        # (the escort the path names, so that filtering the audit by escort finds its refusals;
        # an id the path gives at the length an id may have, else none; clipped: a client, with a
        # token or without, must not grow the log by the size of its URLs)
        parts = path.split("/")
        named = parts[3] if len(parts) > 3 and parts[2] == "emergencies" and parts[3] else None
        service.audit.record("rejected", t_s=service.state.t_s,
                             escort_id=named if named is not None and len(named) <= MAX_ID_LENGTH else None,
                             method=_clip(method), path=_clip(path), status=status, detail=_clip(detail))

    def flush(self) -> None:
        """At the stop: the requests refused for their token since the last such row, in one
        row (the last of them, saying how many more), so that the log counts every one."""
        if self._unauthorized_since:
            # (the row is the last of them: the others before it are "more")
            self._unauthorized_since -= 1
            self._unauthorized_at = -math.inf
            self.record(*self._unauthorized_last)


def token_refusal(authorization: bytes | None, expected: bytes) -> tuple[int, str] | None:
    """Why a ``/v1`` request's ``Authorization`` header is refused (status, detail), None where it
    carries the token: as FastAPI's HTTPBearer reads it."""
    if authorization is None:
        return 401, "missing bearer token (Authorization: Bearer <token>)"
    scheme, _, credentials = authorization.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not credentials:
        return 401, "missing bearer token (Authorization: Bearer <token>)"
    if not hmac.compare_digest(credentials.encode("latin-1"), expected):
        return 403, "wrong bearer token"
    return None


PLACE_TAGS = ("edge", "geo")  # the tags of models.Place's members, which pydantic puts in an error's path


def _field_path(loc: Sequence[Any]) -> list[Any]:
    """A validation error's path as the client wrote it: without "body", and without the tag
    of the kind of place pydantic chose (``origin.edge.edge`` is ``origin.edge``)."""
    parts = [x for x in loc if x != "body"]
    return [x for i, x in enumerate(parts)
            if not (i > 0 and parts[i - 1] in ("origin", "destination") and x in PLACE_TAGS)]


def _status_of(error: GreenwaveError) -> int:
    return error.status if isinstance(error, RequestError) else 422


async def _answer(future: Future[Any], timeout_s: float) -> Any:
    try:
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout_s)
    except asyncio.TimeoutError:
        raise RequestError("the simulation did not answer in time", 503) from None


def _place(p: Any) -> Place | None:
    if p is None:
        return None
    if isinstance(p, EdgePlace):
        return Place(edge=p.edge)
    return Place(lon=p.lon, lat=p.lat)


class _ReadCache:
    """The JSON of the published state's escorts, made once per tick however often it is polled.

    Used from the event loop's thread only; a new published state (a new object) empties it."""

    def __init__(self, service: SimService) -> None:
        self.service = service
        self.state: object = None
        self.bodies: dict[str, bytes] = {}
        self.lists: dict[str | None, bytes] = {}

    def _current(self) -> ServiceState:
        state = self.service.state
        if state is not self.state:
            self.state, self.bodies, self.lists = state, {}, {}
        return state

    def escort(self, escort_id: str) -> bytes | None:
        state = self._current()
        body = self.bodies.get(escort_id)
        if body is None:
            view = state.escorts.get(escort_id)
            if view is None:
                return None
            body = self.bodies[escort_id] = EscortOut.model_validate(view).model_dump_json().encode()
        return body

    def escorts(self, state_filter: str | None) -> bytes:
        state = self._current()
        body = self.lists.get(state_filter)
        if body is None:
            parts = [self.escort(v.id) or b"" for v in state.escorts.values()
                     if state_filter is None or v.state == state_filter]
            body = self.lists[state_filter] = b"[" + b",".join(parts) + b"]"
        return body


DOCS_STATIC = "/docs-static"


def _offline_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` from files installed with greenwave (fastapi-offline's),
    not from a CDN: a control centre's network often reaches no CDN, and the pages were blank."""
    app.mount(DOCS_STATIC, StaticFiles(directory=str(files("fastapi_offline") / "static")), name="docs-static")
    title = app.title
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url, title=f"{title} - Swagger UI",
            swagger_js_url=f"{DOCS_STATIC}/swagger-ui-bundle.js", swagger_css_url=f"{DOCS_STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_STATIC}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},  # (no badge from validator.swagger.io)
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url, title=f"{title} - ReDoc", redoc_js_url=f"{DOCS_STATIC}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_STATIC}/favicon.png", with_google_fonts=False,
        )


def create_app(service: SimService, token: str, *, max_body_bytes: int = MAX_BODY_BYTES,
               sse_max_s: float = 600.0) -> FastAPI:
    app = FastAPI(
        title="greenwave city-brain API",
        version=__version__,
        description="Dispatch, follow and cancel emergency-vehicle escorts (green waves) on a live SUMO "
        "simulation. Every /v1 request needs `Authorization: Bearer <token>`.",
        docs_url=None,
        redoc_url=None,
        # (Starlette's redirect of "/v1/emergencies/" names an http:// URL from the Host header,
        # before the token is checked: wrong behind a TLS proxy; a 404 names the path instead)
        redirect_slashes=False,
    )
    _offline_docs(app)
    bearer = HTTPBearer(auto_error=False, description="The token of `greenwave serve`.")
    expected = token.encode()
    rejections = Rejections(service)
    app.state.rejections = rejections  # (serve flushes its count at the stop)

    def authorize(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        # (Guard has checked it already, before the body: here for the OpenAPI document, and in
        # case a route is ever reached past it)
        if credentials is None:
            raise HTTPException(401, "missing bearer token (Authorization: Bearer <token>)")
        if not hmac.compare_digest(credentials.credentials.encode(), expected):
            raise HTTPException(403, "wrong bearer token")

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(authorize)], responses=_ERRORS)

    # -- errors: JSON naming the problem, never a traceback ---------------------------------------
    @app.exception_handler(GreenwaveError)
    async def _greenwave_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, GreenwaveError)
        status = _status_of(exc)
        rejections.record(request.method, request.url.path, status, str(exc))
        return _error(status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = []
        for e in exc.errors():
            if e.get("type") == "json_invalid":  # loc is ("body", character offset): not a field
                at = [x for x in e.get("loc", ()) if isinstance(x, int)]
                where_in = f" at character {at[0] + 1}" if at else ""  # the offset counts from 0
                ctx = e.get("ctx") or {}
                why = f" ({ctx['error']})" if isinstance(ctx, dict) and ctx.get("error") else ""
                errors.append({"field": "body", "message": f"not valid JSON{where_in}{why}"})
                continue
            where = ".".join(str(x) for x in _field_path(e.get("loc", ()))) or "body"
            errors.append({"field": where, "message": str(e.get("msg", "invalid"))})
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "invalid request"
        rejections.record(request.method, request.url.path, 422, detail)
        return _error(422, detail, errors)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        detail = str(exc.detail) if exc.status_code != 404 or exc.detail != "Not Found" else (
            f"no such path '{request.url.path}'")
        status = exc.status_code
        if status == 400 and exc.detail == "There was an error parsing the body":
            # (FastAPI's own 400 for a body it cannot decode: not UTF-8 text, or nested too deep)
            status, detail = 422, "body: not valid JSON (not UTF-8 text, or nested too deep)"
            rejections.record(request.method, request.url.path, status, detail)
            return _error(status, detail, [{"field": "body", "message": detail.removeprefix("body: ")}])
        if status == 405:
            detail = f"{request.method} is not allowed on '{request.url.path}'"
        rejections.record(request.method, request.url.path, status, detail)
        return _error(status, detail)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error in %s %s", request.method, request.url.path)
        return _error(500, f"internal error ({type(exc).__name__}); the simulation keeps running")

    # -- escorts ---------------------------------------------------------------------------------
    EscortId = Annotated[str, Path(pattern=ID_PATTERN, max_length=MAX_ID_LENGTH, description="Escort id.")]

    cache = _ReadCache(service)

    def _escort_or_404(escort_id: str) -> Response:
        body = cache.escort(escort_id)
        if body is None:
            raise RequestError(f"unknown escort '{escort_id}'", 404)
        return Response(body, media_type="application/json")

    @v1.post("/emergencies", status_code=201, response_model=EscortOut, summary="Dispatch an escort",
             responses={201: {"description": "The escort, dispatched", "headers": {"Location": {
                 "description": "The new escort's URL: /v1/emergencies/{id}", "required": True,
                 "schema": {"type": "string"}}}}})
    async def dispatch(body: DispatchRequest, response: Response) -> EscortOut:
        command = Dispatch(
            escort_id=body.id, vehicle_type=body.vehicle_type, priority=body.priority,
            origin=_place(body.origin), destination=_place(body.destination),
            route=tuple(body.route) if body.route is not None else None, vehicle_id=body.vehicle_id,
            tracking=body.tracking,
        )
        view = await _answer(service.submit(command), service.answer_timeout_s)
        response.headers["Location"] = f"/v1/emergencies/{quote(view.id, safe=':')}"  # (a # is %23)
        return EscortOut.model_validate(view)

    @v1.get("/emergencies", response_model=list[EscortOut], summary="Every escort")
    async def list_escorts(
        state: Annotated[str | None, Query(pattern="^(dispatched|en_route|arrived|cancelled)$")] = None,
    ) -> Response:
        return Response(cache.escorts(state), media_type="application/json")

    @v1.get("/emergencies/{escort_id}", response_model=EscortOut, summary="One escort")
    async def get_escort(escort_id: EscortId) -> Response:
        return _escort_or_404(escort_id)

    @v1.post("/emergencies/{escort_id}/positions", response_model=PositionAccepted,
             summary="Feed an external position (map-matched onto the route)")
    async def position(escort_id: EscortId, body: PositionRequest) -> PositionAccepted:
        command = Position(escort_id=escort_id, edge=body.edge, offset_m=body.offset_m, lon=body.lon, lat=body.lat,
                           speed_mps=body.speed_mps, t_s=body.timestamp)
        return PositionAccepted.model_validate(await _answer(service.submit(command), service.answer_timeout_s))

    @v1.post("/emergencies/{escort_id}/route", response_model=EscortOut,
             summary="Re-route an escort under way (from the edge it is on now)")
    async def reroute(escort_id: EscortId, body: RouteRequest) -> EscortOut:
        command = Reroute(escort_id=escort_id, route=tuple(body.route) if body.route is not None else None,
                          destination=_place(body.destination))
        return EscortOut.model_validate(await _answer(service.submit(command), service.answer_timeout_s))

    @v1.delete("/emergencies/{escort_id}", response_model=EscortOut, summary="Cancel an escort")
    async def cancel(escort_id: EscortId) -> EscortOut:
        return EscortOut.model_validate(await _answer(service.submit(Cancel(escort_id)), service.answer_timeout_s))

    # -- signals -----------------------------------------------------------------------------------
    @v1.get("/signals", response_model=list[SignalOut], summary="Every signal on an escort's route")
    async def list_signals() -> list[SignalOut]:
        return [SignalOut.model_validate(s) for s in service.state.signals.values()]

    @v1.get("/signals/{tls_id}", response_model=SignalOut, summary="One signal")
    async def get_signal(tls_id: Annotated[str, Path(min_length=1, max_length=256)]) -> SignalOut:
        view = service.state.signals.get(tls_id)
        if view is not None:
            return SignalOut.model_validate(view)
        program = service.network.programs.get(tls_id)
        if program is None:
            raise RequestError(f"unknown signal '{tls_id}'", 404)
        # not on any escort's route: greenwave does not watch it, its program runs untouched
        return SignalOut(tls_id=tls_id, watched=False, state=None, program=program.program_id, phase=None,
                         stage="idle", escorts=[], preempted=False)

    # -- events and audit --------------------------------------------------------------------------
    @v1.get("/events", summary="Server-sent events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "An SSE stream"}})
    async def events(
        since: Annotated[int | None, Query(ge=0, le=2**53, description="Replay events after this id.")] = None,
        last_event_id: Annotated[str | None, Header(max_length=32)] = None,
    ) -> StreamingResponse:
        bus = service.events
        # a reconnecting client (an EventSource) sends Last-Event-ID to the URL it first opened:
        # the header wins over that URL's ?since=, or every reconnect would replay it all again
        start = since
        if last_event_id is not None and last_event_id.isascii() and last_event_id.isdigit():  # ('²' is a digit)
            start = int(last_event_id)
        if start is None or start > bus.last_id:
            # (an id ahead of every event: the stream stayed silent for good, the next events' ids
            # being lower)
            start = bus.last_id

        async def stream() -> AsyncIterator[str]:
            last, opened, beat = start, time.monotonic(), time.monotonic()
            yield "retry: 1000\n: greenwave events\n\n"
            while True:
                finished = service.finished  # read before the flush: its last events are sent, then the end
                lost, fresh = bus.since_counting_lost(last)
                if lost:
                    # (only the last events are kept: say so, rather than skip them silently)
                    yield f"event: gap\ndata: {json.dumps({'after_id': last, 'lost': lost})}\n\n"
                for e in fresh:
                    last = e.id
                    yield e.frame
                now = time.monotonic()
                if finished or now - opened >= sse_max_s:
                    return
                if now - beat >= 15.0:
                    beat = now
                    yield ": keep-alive\n\n"
                await asyncio.sleep(0.1)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @v1.get("/audit", response_model=list[AuditOut], summary="The audit log")
    async def audit(
        since: Annotated[int, Query(ge=0, le=2**53, description="Entries after this id.")] = 0,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
        kind: Annotated[str | None, Query(pattern=f"^({'|'.join(KINDS)})?$",
                                          description="One kind of entry; empty or absent: every kind.")] = None,
    ) -> list[AuditOut]:
        rows = await asyncio.to_thread(service.audit.since, since, limit, kind or None)
        return [AuditOut.model_validate(r) for r in rows]

    app.include_router(v1)

    # -- health and metrics (no token: probes and scrapers) ------------------------------------------
    # (GET and HEAD as two routes: one route for both gave both one operation id, which FastAPI
    # warned of and client generators refuse)
    @app.head("/healthz", response_model=Health, responses={503: {"model": Health}}, operation_id="healthz_head",
              summary="Liveness for probes that read only the status")
    @app.get("/healthz", response_model=Health, responses={503: {"model": Health}}, operation_id="healthz",
             summary="Liveness")
    async def healthz(response: Response) -> Health:
        s = service.state
        status: Literal["ok", "ended", "failed", "stopped", "stalled"] = (
            "failed" if s.failed else ("stopped" if not s.running else ("ended" if s.ended else "ok")))
        detail = s.failed
        stalled = service.stalled_s() if status == "ok" else None
        if stalled is not None:
            status = "stalled"
            detail = (f"no simulation step has ended for {stalled:.0f} s: the SUMO does not answer (stopped, or "
                      "stuck); the signals stay as they are shown until it does")
        if status in ("failed", "stopped", "stalled"):
            response.status_code = 503
        return Health(status=status, t_s=s.t_s, ticks=s.ticks, detail=detail, preempted=list(s.preempted),
                      escorts_active=sum(1 for e in s.escorts.values() if e.active), safety=dict(s.safety),
                      targets_refused=s.targets_refused, ticks_recent=service.tick_stats())

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
    async def metrics() -> PlainTextResponse:
        s = service.state
        gauges = {
            "greenwave_sim_time_seconds": ("Simulation time.", s.t_s),
            "greenwave_escorts_active": ("Escorts dispatched or en route.",
                                         float(sum(1 for e in s.escorts.values() if e.active))),
            "greenwave_junctions_preempted": ("Signals switched away from their program now.", float(len(s.preempted))),
            "greenwave_safety_violations": ("Safety rule violations (S1-S5) seen by the monitor.",
                                            float(sum(s.safety.values()))),
            "greenwave_targets_refused": ("Planner ticks that refused a green target no program phase shows.",
                                          float(s.targets_refused)),
            "greenwave_up": ("1 while the simulation runs (0 once a step has not ended for long: stalled).",
                             1.0 if s.running and not s.failed and service.stalled_s() is None else 0.0),
        }
        return PlainTextResponse(service.metrics.render(gauges), media_type="text/plain; version=0.0.4")

    # (the v1 routes themselves: the app's list holds the included router, which names no route)
    app.add_middleware(Guard, service=service, rejections=rejections, token=expected, max_body_bytes=max_body_bytes,
                       routes=[*v1.routes, *app.router.routes])
    return app
