"""/fhir/: the read-only FHIR R4 API (issue 17) for authorized systems, not for browsers.

No session, no CSRF: a client trades its credentials for a bearer token at ``POST /fhir/auth/token``
(OAuth2 client credentials, HTTP Basic or form fields) and sends ``Authorization: Bearer ...``.
The routes are ``PUBLIC`` to the session rules (app/access.py); ``_authenticate`` (this
blueprint's before_request) is their guard: no, invalid or expired token -> 401 with
``WWW-Authenticate``; a resource type outside the token's scopes -> 403. Every read answer is one
``phi.viewed`` audit row (app/phi.py), its actor the client (``fhir_client``), listing the patients
whose records it carried. Errors are OperationOutcomes; answers ``application/fhir+json``, never
cached. What is served comes from ``fhir_resources.REGISTRY``, as does ``/fhir/metadata``.
"""
from __future__ import annotations

import base64
import binascii
import json
from urllib.parse import unquote, urlencode

from flask import Blueprint, Response, current_app, g, request

from app import phi
from app.access import PUBLIC, access
from app.extensions import csrf, db, limiter
from app.models import FhirExport, FhirExportFile
from app.services import fhir_clients, fhir_export, fhir_resources
from app.services.fhir_resources import BY_NAME, SearchError
from app.web import now

bp = Blueprint("fhir", __name__, url_prefix="/fhir")
csrf.exempt(bp)
FHIR_JSON = "application/fhir+json"
NDJSON = "application/fhir+ndjson"
OPEN = frozenset({"fhir.metadata", "fhir.token"})


def _settings():
    return current_app.config["SETTINGS"]


def base_url() -> str:
    return request.url_root.rstrip("/") + "/fhir"


def fhir_response(body: dict, status: int = 200, headers: dict | None = None) -> Response:
    response = current_app.response_class(json.dumps(body, separators=(",", ":")), status=status,
                                          mimetype=FHIR_JSON)
    response.headers["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def outcome(status: int, code: str, text: str, headers: dict | None = None) -> Response:
    """An OperationOutcome; shows no PHI, so it is never a view to audit."""
    phi.withheld()
    severity = "error" if status < 500 else "fatal"
    body = fhir_resources.to_json({"resourceType": "OperationOutcome",
                                   "issue": [{"severity": severity, "code": code, "diagnostics": text}]})
    return fhir_response(body, status, headers)


def _unauthorized(error: str, text: str) -> Response:
    return outcome(401, "login", text, {"WWW-Authenticate": f'Bearer realm="fhir", error="{error}"'})


@bp.before_request
def _authenticate():
    g.phi_recorded = False
    if request.endpoint in OPEN or request.endpoint is None:
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return outcome(401, "login", "A bearer token is required (POST /fhir/auth/token).",
                       {"WWW-Authenticate": 'Bearer realm="fhir"'})
    try:
        token = fhir_clients.authenticate(db.session, value.strip(), now=now())
    except fhir_clients.InvalidToken as error:
        db.session.rollback()
        return _unauthorized("invalid_token", f"The access token is not valid ({error}).")
    g.fhir_token = token
    g.fhir_client = token.client
    phi.shown(actor=fhir_clients.actor_of(token.client))
    return None


def _require_scope(resource_type: str) -> Response | None:
    if not fhir_clients.allows(g.fhir_token.scopes, resource_type):
        return outcome(403, "forbidden", f"The token's scopes do not include system/{resource_type}.read.",
                       {"WWW-Authenticate": 'Bearer realm="fhir", error="insufficient_scope", '
                                            f'scope="system/{resource_type}.read"'})
    return None


def patients_in(resource: dict) -> set[int]:
    """The patients a resource is about (for the audit row)."""
    found = set()

    def take(ref):
        if isinstance(ref, dict) and str(ref.get("reference", "")).startswith("Patient/"):
            tail = ref["reference"][len("Patient/"):]
            if tail.isdigit():
                found.add(int(tail))

    if resource.get("resourceType") == "Patient" and str(resource.get("id", "")).isdigit():
        found.add(int(resource["id"]))
    for key in ("subject", "patient", "beneficiary"):
        take(resource.get(key))
    for participant in resource.get("participant") or ():
        take(participant.get("actor"))
    for entity in resource.get("entity") or ():
        take(entity.get("what"))
    return found


def _shown(resource_type: str, resources: list[dict], **record) -> None:
    patients = set()
    for resource in resources:
        patients |= patients_in(resource)
    phi.shown(patient_ids=patients, record={"fhir": resource_type, "count": len(resources), **record})


# -- OAuth2 token endpoint -------------------------------------------------------------------------

def _token_error(status: int, error: str, description: str, headers: dict | None = None) -> Response:
    response = current_app.response_class(json.dumps({"error": error, "error_description": description}),
                                          status=status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _client_credentials() -> tuple[str, str]:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return "", ""
        client_id, _, secret = decoded.partition(":")
        return unquote(client_id), unquote(secret)
    return request.form.get("client_id", ""), request.form.get("client_secret", "")


@bp.post("/auth/token")
@access(PUBLIC, phi=False)      # a system signs in here with its client credentials
@limiter.limit("60 per minute")
def token():
    if request.form.get("grant_type") != "client_credentials":
        return _token_error(400, "unsupported_grant_type", "Use grant_type=client_credentials.")
    client_id, secret = _client_credentials()
    try:
        issued = fhir_clients.issue_token(db.session, client_id=client_id, secret=secret,
                                          requested_scope=request.form.get("scope"), now=now(),
                                          ttl=_settings().FHIR_TOKEN_TTL)
    except fhir_clients.InvalidClient:
        db.session.rollback()
        return _token_error(401, "invalid_client", "Unknown client or wrong secret.",
                            {"WWW-Authenticate": 'Basic realm="fhir"'})
    except fhir_clients.InvalidScope as error:
        db.session.rollback()
        return _token_error(400, "invalid_scope", str(error))
    db.session.commit()
    response = current_app.response_class(json.dumps({
        "access_token": issued.access_token, "token_type": "bearer", "expires_in": issued.expires_in,
        "scope": " ".join(issued.scopes)}), mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


# -- metadata ------------------------------------------------------------------------------------

@bp.get("/metadata")
@access(PUBLIC, phi=False)
def metadata():
    return fhir_response(fhir_resources.capability_statement(base_url=base_url(), now=now()))


# -- read and search -------------------------------------------------------------------------------

def _served_type(resource_type: str):
    """The registry's type the token may read, or the refusal: 404 for a type not served, 403 for
    one outside the token's scopes."""
    rt = BY_NAME.get(resource_type)
    if rt is None:
        return outcome(404, "not-supported", f"Resource type {resource_type[:40]!r} is not served.")
    refused = _require_scope(rt.name)
    return refused if refused is not None else rt


def _search_args() -> tuple[dict[str, list[str]], int, int] | Response:
    args: dict[str, list[str]] = {}
    count, offset = _settings().FHIR_PAGE_SIZE, 0
    for name, value in request.args.items(multi=True):
        if name == "_count":
            if not value.isdigit() or len(value) > 6:
                return outcome(400, "invalid", "_count must be a whole number.")
            count = min(int(value), _settings().FHIR_PAGE_MAX)
        elif name == "_offset":
            if not value.isdigit() or len(value) > 9:
                return outcome(400, "invalid", "_offset must be a whole number.")
            offset = int(value)
        elif name == "_format":
            if value not in ("json", "application/json", FHIR_JSON):
                return outcome(400, "not-supported", "Only JSON is served.")
        else:
            args.setdefault(name, []).append(value)
    return args, count, offset


def _page_url(rt_name: str, args: dict[str, list[str]], count: int, offset: int) -> str:
    pairs = [(k, v) for k, values in args.items() for v in values] + [("_count", count), ("_offset", offset)]
    return f"{base_url()}/{rt_name}?{urlencode(pairs)}"


def bundle(resources: list[dict], *, total: int, links: list[tuple[str, str]]) -> dict:
    return {"resourceType": "Bundle", "type": "searchset", "total": total,
            "link": [{"relation": relation, "url": url} for relation, url in links],
            "entry": [{"fullUrl": f"{base_url()}/{r['resourceType']}/{r['id']}", "resource": r,
                       "search": {"mode": "match"}} for r in resources]}


@bp.get("/<resource_type>")
@access(PUBLIC, phi="fhir")
def search(resource_type: str):
    rt = _served_type(resource_type)
    if isinstance(rt, Response):
        return rt
    parsed = _search_args()
    if isinstance(parsed, Response):
        return parsed
    args, count, offset = parsed
    try:
        page = fhir_resources.search(db.session, rt, args, now=now(), count=count, offset=offset)
    except SearchError as error:
        db.session.rollback()
        return outcome(400, "invalid", str(error))
    resources = [fhir_resources.to_json(rt.build(db.session, row)) for row in page.rows]
    links = [("self", _page_url(rt.name, args, count, offset))]
    if offset + count < page.total and count > 0:
        links.append(("next", _page_url(rt.name, args, count, offset + count)))
    if offset > 0:
        links.append(("previous", _page_url(rt.name, args, count, max(0, offset - count))))
    _shown(rt.name, resources, search=True)
    return fhir_response(bundle(resources, total=page.total, links=links))


@bp.get("/<resource_type>/<resource_id>")
@access(PUBLIC, phi="fhir")
def read(resource_type: str, resource_id: str):
    rt = _served_type(resource_type)
    if isinstance(rt, Response):
        return rt
    row = fhir_resources.get(db.session, rt, resource_id, now=now())
    if row is None:
        return outcome(404, "not-found", f"{rt.name}/{resource_id[:64]} is not known.")
    resource = fhir_resources.to_json(rt.build(db.session, row))
    _shown(rt.name, [resource], id=resource["id"])
    return fhir_response(resource)


@bp.get("/Patient/<resource_id>/$everything")
@access(PUBLIC, phi="fhir")
def everything(resource_id: str):
    refused = _require_scope("Patient")
    if refused:
        return refused
    patient = fhir_resources.get(db.session, BY_NAME["Patient"], resource_id, now=now())
    if patient is None:
        return outcome(404, "not-found", f"Patient/{resource_id[:64]} is not known.")
    scopes = g.fhir_token.scopes
    found = fhir_resources.everything(db.session, patient, allowed=lambda name: fhir_clients.allows(scopes, name))
    resources = [fhir_resources.to_json(BY_NAME[name].build(db.session, row)) for name, row in found]
    _shown("Patient/$everything", resources, id=str(patient.id))
    url = f"{base_url()}/Patient/{patient.id}/$everything"
    return fhir_response(bundle(resources, total=len(resources), links=[("self", url)]))


# -- bulk export ---------------------------------------------------------------------------------

NDJSON_FORMATS = {"application/fhir+ndjson", "application/ndjson", "ndjson"}


@bp.get("/$export")
@access(PUBLIC, phi=False)      # starts a job; the files it writes are audited as they are written and read
def export():
    if "respond-async" not in request.headers.get("Prefer", ""):
        return outcome(400, "invalid", "A bulk export needs the header Prefer: respond-async.")
    for name in request.args:
        if name not in ("_type", "_outputFormat"):
            return outcome(400, "not-supported", f"The export parameter {name[:40]!r} is not supported.")
    output_format = request.args.get("_outputFormat")
    if output_format is not None and output_format not in NDJSON_FORMATS:
        return outcome(400, "not-supported", "Only NDJSON output is supported.")
    try:
        types = fhir_export.types_for(g.fhir_token.scopes, request.args.get("_type"))
    except SearchError as error:
        return outcome(400, "invalid", str(error))
    except PermissionError as error:
        return outcome(403, "forbidden", f"The token's scopes do not include system/{error}.read.")
    if not types:
        return outcome(403, "forbidden", "The token's scopes allow no exportable resource type.")
    job = fhir_export.start(db.session, client=g.fhir_client, types=types, request_url=request.url, now=now())
    db.session.commit()                       # the job is enqueued after this commit
    response = fhir_response(fhir_resources.to_json({
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "information", "code": "informational", "diagnostics": "Export started."}]}), 202)
    response.headers["Content-Location"] = f"{base_url()}/$export-status/{job.id}"
    return response


def _own_export(export_id: int) -> FhirExport | None:
    job = db.session.get(FhirExport, export_id)
    if job is None or job.client_id != g.fhir_client.id:
        return None
    return job


@bp.get("/$export-status/<int:export_id>")
@access(PUBLIC, phi=False)      # progress and a list of file links: no PHI
def export_status(export_id: int):
    job = _own_export(export_id)
    if job is None:
        return outcome(404, "not-found", "No such export.")
    if job.status == "failed":
        return outcome(500, "exception", "The export failed; start a new one.")
    if job.status != "completed":
        response = fhir_response(fhir_resources.to_json({
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "information", "code": "informational",
                       "diagnostics": f"{job.status}: {len(job.done_types or [])} of {len(job.types)} types"}]}), 202)
        response.headers["X-Progress"] = f"{job.progress_percent}% ({len(job.done_types or [])}/{len(job.types)} types)"
        response.headers["Retry-After"] = "2"
        return response
    response = current_app.response_class(json.dumps(fhir_export.manifest(job, base_url=base_url())),
                                          mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/$export-files/<int:export_id>/<resource_type>.ndjson")
@access(PUBLIC, phi="fhir")
def export_file(export_id: int, resource_type: str):
    job = _own_export(export_id)
    if job is None or resource_type not in (job.types or []):
        return outcome(404, "not-found", "No such export file.")
    refused = _require_scope(resource_type)
    if refused:
        return refused
    file = db.session.query(FhirExportFile).filter_by(export_id=job.id, resource_type=resource_type).one_or_none()
    if file is None:
        return outcome(404, "not-found", "That file is not written yet.")
    patients = set()
    for line in file.content.splitlines():
        if line.strip():
            patients |= patients_in(json.loads(line))
    phi.shown(patient_ids=patients, record={"fhir": f"$export/{resource_type}", "count": file.count,
                                            "export_id": job.id})
    response = current_app.response_class(file.content, mimetype=NDJSON)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(500)
def _server_error(error):
    db.session.rollback()
    return outcome(500, "exception", "The server could not answer; nothing was changed. Try again.")


@bp.route("/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
@access(PUBLIC, phi=False)
def unknown(rest: str):
    if request.method != "GET":
        return outcome(405, "not-supported", "This FHIR server is read-only.")
    return outcome(404, "not-supported", "No such FHIR endpoint.")
