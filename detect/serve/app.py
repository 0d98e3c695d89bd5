"""create_app: the FastAPI application of `detect serve`.

    GET  /             the viewer (static/viewer.html, shipped in the package; no CDN)
    GET  /healthz      the process is alive
    GET  /readyz       the model is loaded (503 while it is not)
    GET  /v1/model     the model card (detect.serve.model_card)
    POST /v1/predict   a DICOM / PNG / JPEG, raw body or multipart field `file` -> the boxes.json
                       entry + timing, batched with the requests beside it (detect.serve.predict,
                       detect.serve.pool); explain=true: a classifier's Grad-CAM overlay
    GET  /docs         OpenAPI (Swagger UI; the spec itself is /openapi.json)

Every error is JSON `{"error": "<one line>", "status": <code>}`. The order of the checks on an
upload: token (401), the query's values (422), admission (503 with Retry-After when the
expected wait is over --max-wait-s or the queue is full; checked again when it is queued), what
the model can answer (422: explain=true for a detector, a threshold_from it has no point for),
size while streaming (413), content sniffing (415), declared size (422), then its batch's
decode/predict (422 for an unreadable file).
Logs carry the request's kind, byte size, image size, status and timing; never the file
name, patient name or patient ID.
"""

from __future__ import annotations

import hmac
import logging
import time
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Any, AsyncIterator, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from data_prep.errors import DetectError, ModelOutputError
from detect.models.checkpoint import software_versions
from detect.serve.model_card import model_card
from detect.serve.pool import BatchingPool, PoolFull
from detect.serve.predict import ServeModel, Upload
from detect.serve.settings import ServeSettings
from detect.serve.sniff import UploadError, check_declared_pixels, declared_size_px, sniff_kind
from detect.serve.uploads import extract_upload, read_capped_body, safe_source_name

log = logging.getLogger("detect.serve")

VIEWER_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
UPLOAD_MEDIA_TYPES = ("application/dicom", "image/png", "image/jpeg", "application/octet-stream")
_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "status"],
    "properties": {"error": {"type": "string"}, "status": {"type": "integer"}},
}
_PREDICT_BODY = {
    "required": True,
    "description": "The image, as the raw body or as the multipart/form-data field `file`. Its kind is "
    "read from the content (DICOM 'DICM' or a raw dataset, PNG, JPEG), never from a name or type.",
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary"}},
            }
        },
        **{media: {"schema": {"type": "string", "format": "binary"}} for media in UPLOAD_MEDIA_TYPES},
    },
}


def _error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {
        code: {"description": "error", "content": {"application/json": {"schema": _ERROR_SCHEMA}}} for code in codes
    }


def one_line(text: str, max_chars: int = 300) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= max_chars else flat[: max_chars - 3] + "..."


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": one_line(message), "status": status}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "invalid request"
    first = errors[0]
    where = " ".join(str(p) for p in first.get("loc", ()) if p not in ("query", "body"))
    return f"{where}: {first.get('msg', 'invalid value')}" if where else str(first.get("msg", "invalid request"))


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(UploadError)
    async def upload_error(_request: Request, exc: UploadError) -> JSONResponse:
        return error_response(exc.status, str(exc))

    @app.exception_handler(ModelOutputError)
    async def model_output_error(_request: Request, exc: ModelOutputError) -> JSONResponse:
        log.error("%s", exc)  # a broken model, not a bad request: the operator must see it
        return error_response(ModelOutputError.http_status, str(exc))

    @app.exception_handler(DetectError)
    async def detect_error(_request: Request, exc: DetectError) -> JSONResponse:
        return error_response(422, str(exc))

    @app.exception_handler(PoolFull)
    async def pool_full(_request: Request, exc: PoolFull) -> JSONResponse:
        return error_response(503, str(exc), headers={"Retry-After": str(exc.retry_after_s)})

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error: %s", type(exc).__name__, exc_info=exc)
        return error_response(500, "internal server error (the server log has the details)")


def create_app(model: ServeModel | None, settings: ServeSettings = ServeSettings()) -> FastAPI:
    """The application around `model` (None: not loaded yet, /readyz and /v1/* answer 503)."""

    def run_batch(uploads: list[Upload]) -> list[Any]:
        return app.state.model.predict_uploads(uploads)

    pool: BatchingPool[Upload, dict[str, Any]] = BatchingPool(
        run_batch,
        workers=settings.workers,
        max_batch=settings.max_batch,
        batch_window_s=settings.batch_window_ms / 1000.0,
        max_wait_s=settings.max_wait_s,
        max_queued=settings.queue_size,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        pool.shutdown()  # the model belongs to the caller (run_server closes it)

    app = FastAPI(
        title="detect serve",
        version=software_versions()["detect"],
        lifespan=lifespan,
        description="Pneumonia boxes and probabilities for one chest radiograph per request "
        "(concurrent requests share batched forward passes).",
    )
    app.state.model = model
    app.state.pool = pool
    _install_error_handlers(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
            allow_credentials=False,
        )

    @app.middleware("http")
    async def headers_and_log(request: Request, call_next: Any) -> Any:
        started = time.perf_counter()
        response = await call_next(request)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers.setdefault("Cache-Control", "no-store")
        if request.url.path.startswith("/v1/"):  # the path only: the query holds no patient data, but stays out too
            log.info(
                "%s %s %d %.1f ms",
                request.method,
                request.url.path,
                response.status_code,
                (time.perf_counter() - started) * 1000,
            )
        return response

    bearer = HTTPBearer(
        auto_error=False, description="Only when the server was started with --token / $DETECT_SERVE_TOKEN."
    )

    def require_token(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if settings.token is None:
            return
        given = credentials.credentials if credentials is not None else ""
        if not hmac.compare_digest(given.encode(), settings.token.encode()):
            raise StarletteHTTPException(
                401,
                "missing or wrong bearer token (send Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": "Bearer"},
            )

    def loaded_model() -> ServeModel:
        if app.state.model is None:
            raise StarletteHTTPException(503, "the model is not loaded yet", headers={"Retry-After": "5"})
        return app.state.model

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def viewer() -> HTMLResponse:
        page = files("detect.serve").joinpath("static/viewer.html").read_text(encoding="utf-8")
        return HTMLResponse(page, headers={"Content-Security-Policy": VIEWER_CSP, "X-Frame-Options": "DENY"})

    @app.get("/healthz", summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="The model is loaded", responses=_error_responses(503))
    async def readyz() -> dict[str, Any]:
        model_now = loaded_model()
        wait = pool.expected_wait_s()
        return {
            "status": "ready",
            "model": model_now.loaded.model_info["name"],
            "busy": pool.admitted,
            "queued": pool.queued,
            "capacity": pool.capacity,
            "expected_wait_s": round(wait, 3) if wait is not None else None,
        }

    @app.get(
        "/v1/model",
        summary="The model card",
        dependencies=[Depends(require_token)],
        responses=_error_responses(401, 503),
    )
    async def get_model() -> dict[str, Any]:
        return model_card(loaded_model())

    @app.post(
        "/v1/predict",
        summary="Predict one image",
        dependencies=[Depends(require_token)],
        openapi_extra={"requestBody": _PREDICT_BODY},
        responses=_error_responses(400, 401, 413, 415, 422, 503),
    )
    async def predict(
        request: Request,
        tta: bool | None = Query(None, description="horizontal-flip test-time augmentation (default: the server's)"),
        score_thresh: float | None = Query(None, ge=0.0, le=1.0, description="drop boxes whose final score is below"),
        pneumonia_threshold: float | None = Query(
            None, ge=0.0, le=1.0, description="decision threshold instead of the checkpoint's"
        ),
        threshold_from: Literal["rsna", "kermany"] | None = Query(
            None, description="use this dataset's stored threshold"
        ),
        explain: bool = Query(False, description="add the model's Grad-CAM overlay (classifiers; 422 for a detector)"),
        render: bool = Query(False, description="add the display image (PNG, base64) the viewer draws on"),
    ) -> dict[str, Any]:
        started = time.perf_counter()
        model_now = loaded_model()
        # The request fields of InferenceSettings, by name: the parameters above document them
        # (tests/detect/serve check the two lists agree); the values are parsed and checked there.
        try:
            pool.check_admission()  # refuse first, before any work on the request (submit checks again)
        except PoolFull as exc:
            log.warning("predict refused: %s", exc)
            raise
        options = model_now.request_options(request.query_params, render=render, explain=explain)
        body = await read_capped_body(request, settings.max_upload_bytes)
        data, client_name = extract_upload(body, request.headers.get("content-type"))
        kind = sniff_kind(data)
        height, width, planes, components, bits = declared_size_px(data, kind)
        check_declared_pixels(height, width, planes, settings.max_image_pixels, components=components, bits=bits)
        received = time.perf_counter()
        upload = Upload(data, kind, safe_source_name(client_name), options, queued_at=received)
        try:
            result = await pool.run(upload, key=options.settings.tta)  # a batch has one TTA flag
        except PoolFull as exc:
            log.warning("predict refused: %s", exc)
            raise
        result["timing_ms"] = {
            "receive": round((received - started) * 1000, 2),
            **result["timing_ms"],
            "total": round((time.perf_counter() - started) * 1000, 2),
        }
        log.info(
            "predict %s %d bytes %dx%d: %d box(es) in %.1f ms (batch of %d)",
            kind,
            len(data),
            width,
            height,
            len(result["prediction"]["boxes"]),
            result["timing_ms"]["total"],
            result["batch_size"],
        )
        return result

    return app
