"""schemathesis against /openapi.json: generated requests for every operation, never a 5xx.

The budget is small (a few dozen examples per operation, seconds in all): this looks for
crashes on odd input, not for coverage. In CI (CI=true) a missing schemathesis fails the test.
"""

from __future__ import annotations

from detect.serve.app import UPLOAD_MEDIA_TYPES, create_app
from detect.serve.settings import ServeSettings
from tests.detect.serve.conftest import require_tool

try:
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st
    from schemathesis.checks import not_a_server_error
except ImportError:  # reported by the test below: a skip here, a failure in CI
    schemathesis = None

EXAMPLES_PER_OPERATION = 25


def test_no_operation_answers_5xx(serve_model):
    require_tool(schemathesis is not None, "schemathesis (pip install -e '.[test]')")
    for media in UPLOAD_MEDIA_TYPES:  # bodies of these types: arbitrary bytes, some with real magic numbers
        magic = st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", bytes(128) + b"DICM", b"\x08\x00\x05\x00"])
        schemathesis.openapi.media_type(
            media, st.builds(lambda head, tail: head + tail, magic, st.binary(max_size=256))
        )
    app = create_app(serve_model, ServeSettings(max_upload_mb=0.01))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/predict", "/v1/model", "/healthz", "/readyz"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def call(case) -> None:
            case.call_and_validate(checks=[not_a_server_error])

        call()
