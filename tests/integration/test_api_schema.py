"""Schemathesis against the API's own OpenAPI schema, on uvicorn on 127.0.0.1, with a
superadmin token: generated requests, valid and invalid (hypothesis, through schemathesis'
strategies), never get a 5xx, nor a status the schema does not document. Bounded: a few
derandomized examples per operation and mode (the same cases on every run), so it takes seconds.

(schemathesis' own pytest plugin, ``from_fixture``, does not run under pytest 9: each operation
is driven here with ``@given`` instead.)"""
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error, status_code_conformance

EXAMPLES = 4


def test_no_server_error_and_no_undocumented_status(api):
    token = api.token(role="superadmin")
    schema = schemathesis.openapi.from_url(api.url + "/api/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 18
    called = []
    for operation in operations:
        for mode in schemathesis.GenerationMode:
            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            def check(case):
                response = case.call_and_validate(base_url=api.url, headers={"Authorization": f"Bearer {token}"},
                                                  checks=[not_a_server_error, status_code_conformance])
                called.append(response.status_code)

            try:
                check()
            except Unsatisfiable:
                # Nothing to make invalid (no parameters, no body): only the valid mode applies.
                assert mode == schemathesis.GenerationMode.NEGATIVE, operation.label
    assert len(called) >= len(operations) * 2
