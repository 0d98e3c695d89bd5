"""An HTTP session with bounds, for talking to a DICOMweb server that may be slow, broken or hostile.

    session = BoundedSession(deadline_s=300, max_response_bytes=512 MiB)
    with session.limit(max_response_bytes=16 MiB):        # a tighter cap for one kind of request
        client_call_that_uses(session)

Every request the session sends (dicomweb-client's included: the session is handed to it):

- ends within `deadline_s`, from the first byte sent to the last byte of the body, however the
  server trickles (the request runs in a worker thread that the caller waits for with the
  remaining time; each socket read also waits no longer than what is left);
- reads at most `max_response_bytes` of body, counted as it streams (after gzip decoding, so a
  compressed bomb counts at its real size), and keeps the body in memory only up to that;
- follows redirects only on the same scheme, host and port, unless `follow_other_hosts`
  (a redirect to another host would carry the request, and any credentials, elsewhere);
- answers with a content type that the request's Accept header named (a 200 text/html login
  page is not a DICOM answer).

A broken bound is one DicomWebError line: '<url>: timed out ...', '<url>: answer too large ...',
'<url>: redirected to another host ...', '<url>: answered <type>, not <accepted> ...'.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from data_prep.errors import DicomWebError

MIB = 1 << 20
MAX_REDIRECTS = 5
_CHUNK_BYTES = 64 * 1024


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


def _where(url: str) -> str:
    return url.split("?", 1)[0]  # the resource; the query only adds noise


def _media_types(header: str) -> list[str]:
    return [item.split(";", 1)[0].strip().lower() for item in header.split(",") if item.strip()]


class BoundedSession(requests.Session):
    """A requests.Session whose every request has a deadline, a body cap, a redirect policy and
    a content-type check (see the module docstring)."""

    def __init__(
        self,
        *,
        deadline_s: float,
        max_response_bytes: int,
        follow_other_hosts: bool = False,
        read_timeout_s: float = 60.0,
    ) -> None:
        super().__init__()
        self.deadline_s = float(deadline_s)
        self.max_response_bytes = int(max_response_bytes)
        self.follow_other_hosts = follow_other_hosts
        self.read_timeout_s = float(read_timeout_s)
        self._inside = threading.local()

    @contextlib.contextmanager
    def limit(self, *, max_response_bytes: int) -> Iterator[None]:
        """A tighter body cap for the requests sent inside the block (e.g. QIDO-RS JSON)."""
        before = self.max_response_bytes
        self.max_response_bytes = min(before, int(max_response_bytes))
        try:
            yield
        finally:
            self.max_response_bytes = before

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if getattr(self._inside, "active", False):  # a nested call (requests' own machinery): no new bounds
            return super().send(request, **kwargs)
        url = request.url or ""
        deadline = time.monotonic() + self.deadline_s
        cap = self.max_response_bytes
        outcome: dict[str, Any] = {}

        def work() -> None:
            self._inside.active = True
            try:
                outcome["response"] = self._send_bounded(request, deadline, cap, kwargs)
            except BaseException as exc:  # handed to the caller's thread
                outcome["error"] = exc

        worker = threading.Thread(target=work, name="dicomweb-request", daemon=True)
        worker.start()
        worker.join(max(0.0, deadline - time.monotonic()) + 0.05)
        if worker.is_alive():
            # The worker's socket reads wait no longer than the deadline either: it ends soon after.
            raise DicomWebError(f"{_where(url)}: timed out: no complete answer within {self.deadline_s:g} s")
        if "error" in outcome:
            error = outcome["error"]
            if isinstance(error, requests.Timeout) and time.monotonic() >= deadline - 0.05:
                raise DicomWebError(
                    f"{_where(url)}: timed out: no complete answer within {self.deadline_s:g} s"
                ) from None
            raise error
        return outcome["response"]

    def _send_bounded(
        self, request: requests.PreparedRequest, deadline: float, cap: int, kwargs: dict[str, Any]
    ) -> requests.Response:
        kwargs = {**kwargs, "stream": True, "allow_redirects": False}
        current = request
        for _ in range(MAX_REDIRECTS + 1):
            left = deadline - time.monotonic()
            if left <= 0:
                raise requests.Timeout("deadline")
            kwargs["timeout"] = (min(left, self.read_timeout_s), min(left, self.read_timeout_s))
            response = super().send(current, **kwargs)
            if not response.is_redirect:
                self._check_content_type(current, response)
                self._read_body(response, deadline, cap)
                return response
            target = urljoin(response.url or current.url or "", response.headers.get("location", ""))
            response.close()
            if _origin(target) != _origin(current.url or "") and not self.follow_other_hosts:
                raise DicomWebError(
                    f"{_where(current.url or '')}: redirected to another host ({_where(target)}); "
                    "refused (allow it with --dicomweb-follow-redirects)"
                )
            if current.method not in ("GET", "HEAD"):
                raise DicomWebError(
                    f"{_where(current.url or '')}: answered a redirect to a {current.method} "
                    f"request ({_where(target)}); give the final URL"
                )
            following = current.copy()
            following.prepare_url(target, None)
            self.rebuild_auth(following, response)  # credentials never follow to another host
            current = following
        raise DicomWebError(f"{_where(request.url or '')}: more than {MAX_REDIRECTS} redirects")

    def _check_content_type(self, request: requests.PreparedRequest, response: requests.Response) -> None:
        if not response.ok or response.status_code == 204:
            return  # an error status is reported as such (raise_for_status), whatever its body
        accepted = _media_types(str(request.headers.get("Accept", "")))
        if not accepted or any(a in ("*/*", "") for a in accepted):
            return
        got = _media_types(response.headers.get("content-type", "")) or ["no content type"]
        if got[0] not in accepted:
            response.close()
            raise DicomWebError(
                f"{_where(response.url or request.url or '')}: answered {got[0]}, not "
                f"{' or '.join(dict.fromkeys(accepted))} (a login page or a proxy error?)"
            )

    def _read_body(self, response: requests.Response, deadline: float, cap: int) -> None:
        """Read the body into the response (as `stream=False` would), within the deadline and the cap."""
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            response.close()
            raise DicomWebError(
                f"{_where(response.url or '')}: answer too large: {int(declared) / MIB:.0f} MiB "
                f"declared, the limit is {cap / MIB:g} MiB"
            )
        chunks: list[bytes] = []
        total = 0
        try:
            for chunk in response.iter_content(_CHUNK_BYTES):
                total += len(chunk)
                if total > cap:
                    raise DicomWebError(
                        f"{_where(response.url or '')}: answer too large: over {cap / MIB:g} MiB "
                        "(the limit); stopped reading"
                    )
                chunks.append(chunk)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise requests.Timeout("deadline")
                _set_socket_timeout(response, min(left, self.read_timeout_s))
        except BaseException:
            response.close()
            raise
        response._content = b"".join(chunks)  # what requests' own non-streamed read leaves
        response._content_consumed = True


def _set_socket_timeout(response: requests.Response, seconds: float) -> None:
    """Let the next socket read wait at most `seconds` (urllib3 keeps the connection on its response)."""
    connection = getattr(response.raw, "_connection", None)
    sock = getattr(connection, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.settimeout(max(0.01, seconds))
