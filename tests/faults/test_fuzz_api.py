"""Property-based fuzzing of the whole HTTP API from its own OpenAPI schema (schemathesis).

Every operation gets generated valid and invalid requests, with a tenant key (or the
operator token for /v1/admin): no answer may be a 5xx, and every answer must match
the schema (status codes, content types, bodies). Bounded: a few examples per operation
and mode. (schemathesis' pytest plugin does not load under pytest 9: the operations
are driven through Hypothesis directly.)
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api import Api
from tests.conftest import Stack

# No 5xx, and every answer as documented. (Not "positive data accepted": the schema cannot say
# that a message must hold more than whitespace, which the API rightly refuses.)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 8  # per operation and mode: ~30 operations, about a minute on a loaded 2-core machine


def _fuzz(operation: Any, mode: GenerationMode, *, url: str, token: str) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,  # the same examples every run: a failure reproduces, CI is not a lottery
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        case.call_and_validate(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, checks=CHECKS, timeout=30
        )

    run()


def test_api_conforms_to_its_schema(stack: Stack) -> None:
    key = Api(stack.url, stack.admin_token).new_tenant("fuzz")[1]
    schema = schemathesis.openapi.from_url(f"{stack.url}/docs/openapi.json")
    failures: list[str] = []
    tested = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        token = stack.admin_token if operation.path.startswith("/v1/admin") else key
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            tested += 1
            try:
                _fuzz(operation, mode, url=stack.url, token=token)
            except Unsatisfiable:  # nothing in this operation can be made invalid (no body, free-form ids)
                continue
            except Exception as exc:  # one operation's failure must not hide the others'
                failures.append(f"{operation.method.upper()} {operation.path} ({mode.value}): {exc}")
    assert tested >= 40
    assert not failures, "\n\n".join(failures)
