"""Property-based fuzzing of the live API from its own OpenAPI schema (schemathesis).

Every operation gets schema-valid and schema-invalid requests; the server must never answer
5xx, every status it answers must be documented, and responses must match their schemas.
Bounded: :data:`MAX_EXAMPLES` per operation in the default suite (fast for developers),
:data:`CI_EXAMPLES` in the slow set that CI runs (about 2 minutes on 2 cores).
"""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from _server_kit import copy_store  # noqa: E402

MAX_EXAMPLES = 8
CI_EXAMPLES = 200


@pytest.fixture(scope="module")
def fuzz_server(offline_encoder, tmp_path_factory):
    from mindgap.server import create_app, serve_in_thread

    uri = copy_store(offline_encoder, tmp_path_factory.mktemp("fuzz") / "store")
    # a tight body limit keeps generated uploads cheap; timeouts off so slow CI never yields a 504
    app = create_app(uri, encoder=offline_encoder, max_upload_bytes=2_000_000, timeout_s=0)
    with serve_in_thread(app) as srv:
        srv.app = app
        yield srv


def _operations() -> list:
    """The operations of the app's own OpenAPI schema (built offline: no server needed to collect)."""
    from mindgap.server import create_app

    spec = create_app(None).openapi()
    return [r.ok() for r in schemathesis.openapi.from_dict(spec).get_all_operations()]


OPERATIONS = _operations()
#: Operations with a body or query parameters; the rest (no params, or one free-form string in
#: the path) have no schema-invalid input to generate.
NEGATABLE = [op for op in OPERATIONS if op.body or any(p.location == "query" for p in op.iter_parameters())]
CASES = [(op, GenerationMode.POSITIVE) for op in OPERATIONS] + [(op, GenerationMode.NEGATIVE) for op in NEGATABLE]
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


IDS = [f"{op.label} {m.value}" for op, m in CASES]


def _fuzz(op, mode, url: str, n: int) -> None:
    @given(case=op.as_strategy(generation_mode=mode))
    @settings(max_examples=n, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case):
        case.call_and_validate(base_url=url, checks=CHECKS, timeout=60)

    run()


@pytest.mark.parametrize(("op", "mode"), CASES, ids=IDS)
def test_api_never_5xx_and_matches_its_schema(op, mode, fuzz_server):
    _fuzz(op, mode, fuzz_server.url, MAX_EXAMPLES)


@pytest.mark.slow
@pytest.mark.parametrize(("op", "mode"), CASES, ids=IDS)
def test_api_never_5xx_many_examples(op, mode, fuzz_server):
    _fuzz(op, mode, fuzz_server.url, CI_EXAMPLES)


def test_fuzzing_left_the_server_healthy(fuzz_server):
    import httpx

    st = httpx.get(fuzz_server.url + "/stats").json()
    assert "5xx" not in st["server"]["statuses"], st["server"]["statuses"]
    assert httpx.get(fuzz_server.url + "/healthz").json()["status"] == "ok"
