"""JSON bodies on the create routes: one translation, written once, into the multipart form the route already
validates, so a field means the same in both and the two vocabularies cannot drift.

A JSON object's keys are the form's field names. Scalars become form fields (booleans `true`/`false`), lists
become repeated fields, an object becomes its JSON text (the form's JSON-text fields, such as `hyperparameters`). A file field (`file`, `files`, `archive`, `photos`, ...) takes a string, or a list of them
where the form repeats the part:
- a `data:` URI (RFC 2397, base64 or percent-encoded): decoded here into the file part, checked as any upload;
- an `https://` (or `http://`) URL: sent on as a part of type `message/external-body` whose body is the URL. The
  route checks the URL's scheme and host and hands it to the egress workers to fetch (workers.jobs.fetch); the API
  never downloads it. A multipart client may send such a part itself.
"""

from __future__ import annotations

import base64
import binascii
import json
import mimetypes
import secrets
import typing
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from fastapi import params
from fastapi.datastructures import UploadFile
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.requests import Request

from api.errors import ApiError

# The content type of a part that carries a URL instead of the file (RFC 2046's external body, access by URL).
EXTERNAL_BODY = "message/external-body"
URL_SCHEMES = ("https://", "http://")


@dataclass(frozen=True)
class FormShape:
    """What a route's multipart form takes: its plain fields and its file fields (True: the part repeats)."""

    fields: frozenset[str]
    files: dict[str, bool]
    form: type[BaseModel] | None  # the form model whose fields these are (its schema is a component)

    @classmethod
    def of(cls, route: APIRoute) -> FormShape:
        fields: set[str] = set()
        files: dict[str, bool] = {}
        form = None
        for param in route.dependant.body_params:
            annotation = param.field_info.annotation
            if isinstance(param.field_info, params.File):
                files[param.alias] = _is_list(annotation)
            elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
                form = annotation
                fields.update(f.alias or name for name, f in annotation.model_fields.items())
            else:
                fields.add(param.alias)
        return cls(frozenset(fields), files, form)

    def openapi_body(self) -> dict:
        """The route's application/json request body for its OpenAPI operation: the form model's fields, and
        each file field as a data: URI or URL string (a list where the part repeats)."""
        one = {
            "type": "string",
            "description": "a data: URI (base64 or percent-encoded), or an https:// URL that a worker fetches "
            "(images only: stylize and batch files)",
            "examples": ["https://example.com/photo.jpg"],
        }
        files = {name: {"type": "array", "items": one} if many else one for name, many in self.files.items()}
        parts: list[dict] = [{"type": "object", "properties": files}] if files else []
        if self.form is not None:
            parts.insert(0, {"$ref": f"#/components/schemas/{self.form.__name__}"})
        schema = parts[0] if len(parts) == 1 else {"allOf": parts}
        return {"requestBody": {"content": {"application/json": {"schema": schema}}}}


def _is_list(annotation: object) -> bool:
    if typing.get_origin(annotation) is list:
        return True
    return any(typing.get_origin(arg) is list for arg in typing.get_args(annotation))


def is_external(upload: UploadFile) -> bool:
    """A part that names its file by URL (see the module's docstring)."""
    return (upload.content_type or "").split(";")[0].strip().lower() == EXTERNAL_BODY


def external_url(upload: UploadFile, field: str, limit: int = 2048) -> str:
    """The URL an external-body part carries; 422 for anything but one http(s) URL."""
    upload.file.seek(0)
    raw = upload.file.read(limit + 1)
    try:
        url = raw.decode().strip()
    except UnicodeDecodeError:
        url = ""
    if len(raw) > limit or not url.startswith(URL_SCHEMES) or any(c.isspace() for c in url):
        raise ApiError(
            422,
            "invalid_input_url",
            f"{field}: a {EXTERNAL_BODY} part must hold one http(s) URL of at most {limit} characters",
        )
    return url


async def json_as_multipart(request: Request, shape: FormShape, limit: int) -> Request:
    """The same request with its JSON object body rewritten as the route's multipart form."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_parameters", "a JSON body must be an object of the form's fields")
    unknown = sorted(set(data) - shape.fields - set(shape.files))
    if unknown:
        takes = ", ".join(sorted(shape.fields | set(shape.files)))
        raise ApiError(
            422,
            "invalid_parameters",
            f"{', '.join(unknown)}: not a field of {request.url.path} (it takes {takes})",
        )
    boundary = "animegan-" + secrets.token_hex(12)
    parts: list[bytes] = []
    for name, value in data.items():
        if value is None:
            continue
        if name in shape.files:
            values = value if isinstance(value, list) and shape.files[name] else [value]
            for i, item in enumerate(values):
                where = f"{name}[{i}]" if shape.files[name] else name
                parts.append(_file_part(boundary, name, where, item))
        else:
            for item in value if isinstance(value, list) else [value]:
                parts.append(_field_part(boundary, name, _form_text(name, item)))
    encoded = b"".join(parts) + f"--{boundary}--\r\n".encode()
    headers = [(k, v) for k, v in request.scope["headers"] if k not in (b"content-type", b"content-length")]
    headers += [
        (b"content-type", f"multipart/form-data; boundary={boundary}".encode()),
        (b"content-length", str(len(encoded)).encode()),
    ]
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": encoded, "more_body": False}

    return Request({**request.scope, "headers": headers}, receive)


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        "request_too_large",
        f"a JSON body may hold at most {limit} bytes; send large files as multipart parts, a direct upload "
        "(POST /v1/uploads) or an https:// URL",
    )


def _form_text(name: str, value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, dict):
        return json.dumps(
            value
        )  # a form field of JSON text (a training's hyperparameters) may be the object itself
    raise ApiError(
        422,
        "invalid_parameters",
        f"{name}: a form field takes a string, number, boolean or object (or a list of them)",
    )


def _field_part(boundary: str, name: str, text: str) -> bytes:
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
    return head.encode() + text.encode() + b"\r\n"


def _file_part(boundary: str, name: str, where: str, value: object) -> bytes:
    if not isinstance(value, str):
        raise ApiError(
            422, "invalid_parameters", f"{where}: a file field takes a data: URI or an https:// URL"
        )
    if value.startswith("data:"):
        content_type, data = decode_data_uri(value, where)
        ext = mimetypes.guess_extension(content_type) or ""
        filename, body = f"{name}{ext}", data
    elif value.startswith(URL_SCHEMES):
        content_type, filename, body = f"{EXTERNAL_BODY}; access-type=URL", name, value.encode()
    else:
        raise ApiError(
            422,
            "invalid_input_url",
            f"{where}: {value[:60]!r} is neither a data: URI nor an https:// URL",
        )
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    )
    return head.encode() + body + b"\r\n"


def decode_data_uri(uri: str, where: str) -> tuple[str, bytes]:
    """(media type, bytes) of a `data:` URI; 422 naming `where` for a malformed one."""
    header, comma, payload = uri[5:].partition(",")
    if not comma:
        raise ApiError(422, "invalid_data_uri", f"{where}: a data: URI needs a comma before its data")
    options = header.split(";")
    content_type = options[0].strip().lower() or "application/octet-stream"
    if "/" not in content_type or any(c in content_type for c in '"\r\n'):
        raise ApiError(422, "invalid_data_uri", f"{where}: {content_type!r} is not a media type")
    if "base64" in (o.strip().lower() for o in options[1:]):
        try:
            return content_type, base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ApiError(
                422, "invalid_data_uri", f"{where}: the base64 data does not decode ({exc})"
            ) from exc
    return content_type, unquote_to_bytes(payload)
