"""The OpenAPI schema says what the API does: every status a route can answer, the rules that span fields,
and 405 answers that list every method the path allows (what Schemathesis checks, here without it).
"""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import error_of


@pytest.fixture(scope="module")
def spec(api) -> dict:
    return httpx.get(f"{api.url}/openapi.json").json()


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PATCH", "/v1/models", {"GET", "POST"}),
        ("PUT", "/v1/models/some-name", {"GET", "DELETE"}),
        ("PATCH", "/v1/uploads/abc", {"GET", "PUT", "DELETE"}),
        ("PUT", "/v1/jobs/abc", {"GET", "DELETE"}),
        ("GET", "/v1/stylize", {"POST"}),
    ],
)
def test_405_lists_every_method_of_the_path(alice, method, path, allowed):
    response = alice.request(method, path)
    assert response.status_code == 405
    assert set(response.headers["Allow"].replace(" ", "").split(",")) == allowed
    assert error_of(response)["code"] == "method_not_allowed"


@pytest.mark.parametrize("body", [b'{"purpose": "image", "size": 1', b'{"purpose": "\xc3\x28"}'])
def test_malformed_json_is_a_documented_422(alice, spec, body):
    response = alice.post("/v1/uploads", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert error_of(response)["code"] == "invalid_parameters"
    assert "422" in spec["paths"]["/v1/uploads"]["post"]["responses"]


def test_rules_that_span_fields_are_in_the_schema(spec):
    forms = spec["components"]["schemas"]
    assert "size_mode=max_side" in forms["StylizeForm"]["properties"]["max_side"]["description"]
    for path, method in [("/v1/stylize", "post"), ("/v1/batches", "post"), ("/v1/uploads", "post"),
                         ("/v1/trainings", "post"), ("/v1/models", "post")]:  # fmt: skip
        operation = spec["paths"][path][method]
        [key] = [p for p in operation["parameters"] if p["name"] == "Idempotency-Key"]
        [text] = [s for s in key["schema"].get("anyOf", [key["schema"]]) if s.get("type") == "string"]
        assert text.get("minLength") == 1 and text.get("maxLength") == 200, (path, key)
        assert "413" in operation["responses"], path
    listing = spec["paths"]["/v1/jobs"]["get"]
    assert "422" in listing["responses"] and "cursor" in listing["responses"]["422"]["description"]
    put = spec["paths"]["/v1/uploads/{upload_id}"]["put"]["responses"]
    assert {"413", "422"} <= set(put) and "declared" in put["422"]["description"]
    stylize_responses = spec["paths"]["/v1/stylize"]["post"]["responses"]
    assert "upload_size_mismatch" in stylize_responses["422"]["description"]
