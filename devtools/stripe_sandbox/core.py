"""Request context and helpers shared by the resource modules."""
from __future__ import annotations

import re
from typing import Any, Callable

from . import errors
from .store import Store, new_id, public

API_VERSION = "2026-10-28.endive"


class Ctx:
    """Everything a resource handler needs for one API call."""

    def __init__(self, app, store: Store, method: str, path: str, params: dict, key_kind: str,
                 request_id: str, idempotency_key: str | None):
        self.app = app
        self.store = store
        self.method = method
        self.path = path
        self.params = params
        self.key_kind = key_kind  # "secret" | "publishable" | "admin"
        self.request_id = request_id
        self.idempotency_key = idempotency_key
        self.events: list[dict] = []
        self.account: str | None = None   # the Stripe-Account header: the connected account acted as

    def later(self) -> int:
        """When something Stripe does "later" is due (sandbox seconds): ``app.later_seconds`` from now."""
        return self.now() + int(round(getattr(self.app, "later_seconds", 3)))

    # -- time & ids --------------------------------------------------------
    def now(self) -> int:
        return self.store.now()

    @property
    def api_base(self) -> str:
        return self.app.api_base

    # -- params ----------------------------------------------------------
    def allow(self, *names: str) -> None:
        ignored = {"expand", "key", "_stripe_version", "client_secret", "use_stripe_sdk", "_stripe_account"}
        for k in self.params:
            if k not in names and k not in ignored:
                raise errors.invalid(f"Received unknown parameter: {k}", param=k, code="parameter_unknown")

    def has(self, name: str) -> bool:
        return name in self.params

    def str_(self, name: str, *, required: bool = False, choices: tuple | None = None,
             empty_is_null: bool = True, src: dict | None = None, label: str | None = None) -> str | None:
        src = self.params if src is None else src
        label = label or name
        if name not in src:
            if required:
                raise errors.invalid(f"Missing required param: {label}.", param=label, code="parameter_missing")
            return None
        v = src[name]
        if not isinstance(v, str):
            raise errors.invalid(f"Invalid string: {label}", param=label, code="parameter_invalid_string")
        if v == "" and empty_is_null:
            if required:
                raise errors.invalid(f"Missing required param: {label}.", param=label, code="parameter_missing")
            return None
        if choices is not None and v not in choices:
            raise errors.invalid(
                f"Invalid {label}: must be one of {', '.join(choices)}", param=label, code="parameter_invalid_empty"
                if v == "" else None)
        return v

    def int_(self, name: str, *, required: bool = False, minimum: int | None = None,
             src: dict | None = None, label: str | None = None) -> int | None:
        src = self.params if src is None else src
        label = label or name
        if name not in src or src[name] == "":
            if required:
                raise errors.invalid(f"Missing required param: {label}.", param=label, code="parameter_missing")
            return None
        v = src[name]
        if not isinstance(v, str) or not re.fullmatch(r"-?\d{1,15}", v):
            raise errors.invalid(f"Invalid integer: {v if isinstance(v, str) else label}", param=label,
                                 code="parameter_invalid_integer")
        n = int(v)
        if minimum is not None and n < minimum:
            raise errors.invalid(f"This value must be greater than or equal to {minimum}.", param=label,
                                 code="parameter_invalid_integer")
        return n

    def bool_(self, name: str, default: bool | None = None, src: dict | None = None) -> bool | None:
        src = self.params if src is None else src
        if name not in src:
            return default
        v = src[name]
        if v in ("true", "True", "1"):
            return True
        if v in ("false", "False", "0", ""):
            return False
        raise errors.invalid(f"Invalid boolean: {v}", param=name, code="parameter_invalid_boolean")

    def dict_(self, name: str, src: dict | None = None) -> dict | None:
        src = self.params if src is None else src
        if name not in src:
            return None
        v = src[name]
        if v == "":
            return {}
        if not isinstance(v, dict):
            raise errors.invalid(f"Invalid object: {name}", param=name, code="parameter_invalid_object")
        return v

    def metadata(self, current: dict | None = None) -> dict:
        md = dict(current or {})
        if "metadata" not in self.params:
            return md
        v = self.params["metadata"]
        if v == "":
            return {}
        if isinstance(v, list):
            v = {str(i): x for i, x in enumerate(v)}
        if not isinstance(v, dict):
            raise errors.invalid("Invalid object: metadata", param="metadata", code="parameter_invalid_object")
        for k, val in v.items():
            if not isinstance(val, str):
                raise errors.invalid(f"Invalid metadata value for {k}", param=f"metadata[{k}]")
            if len(k) > 40 or len(val) > 500:
                raise errors.invalid("Metadata keys are limited to 40 characters and values to 500.",
                                     param=f"metadata[{k}]")
            if val == "":
                md.pop(k, None)
            else:
                md[k] = val
        if len(md) > 50:
            raise errors.invalid("Metadata can have at most 50 keys.", param="metadata")
        return md

    def expand_paths(self) -> list[str]:
        v = self.params.get("expand", [])
        if isinstance(v, str):
            v = [v]
        if isinstance(v, dict):
            v = list(v.values())
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise errors.invalid("Invalid array: expand", param="expand")
        return v

    # -- objects ----------------------------------------------------------
    def load(self, type_: str, id_: Any, resource: str | None = None, param: str = "id") -> dict:
        obj = self.store.get(id_, type_) if isinstance(id_, str) else None
        if obj is None:
            raise errors.missing(resource or type_, str(id_), param=param)
        return obj

    def emit(self, type_: str, obj: dict, previous_attributes: dict | None = None, *,
             account: str | None = None) -> dict:
        """Record an event; ``account`` (a connected account acted for) is carried as Stripe's Connect events do."""
        data: dict[str, Any] = {"object": public(obj)}
        if previous_attributes is not None:
            data["previous_attributes"] = previous_attributes
        evt = {
            "id": new_id("evt"),
            "object": "event",
            "api_version": API_VERSION,
            "created": self.now(),
            "data": data,
            "livemode": False,
            "pending_webhooks": self.app.webhooks.endpoint_count(self.store, type_),
            "request": {"id": self.request_id if self.key_kind != "admin" else None,
                        "idempotency_key": self.idempotency_key},
            "type": type_,
        }
        if account:
            evt["account"] = account
        self.store.insert(evt)
        self.events.append(evt)
        return evt

    def check_client_secret(self, obj: dict) -> None:
        """With a publishable key, the client secret of the object must be given."""
        if self.key_kind != "publishable":
            return
        cs = self.params.get("client_secret")
        if not cs:
            raise errors.invalid(
                "This API call cannot be made with a publishable API key without the object's client_secret.",
                param="client_secret", status=401)
        if cs != obj.get("client_secret"):
            raise errors.invalid(
                "The client_secret provided does not match any associated " + obj["object"].replace("_", " ")
                + " on this account.", param="client_secret", code="resource_missing", status=400)


def list_object(ctx: Ctx, items: list[dict], url: str) -> dict:
    """Paginate newest-first items with limit / starting_after / ending_before."""
    limit = ctx.int_("limit")
    if limit is None:
        limit = 10
    if not 1 <= limit <= 100:
        raise errors.invalid("Invalid limit: must be between 1 and 100", param="limit")
    sa = ctx.str_("starting_after")
    eb = ctx.str_("ending_before")
    ids = [o["id"] for o in items]
    if sa:
        if sa not in ids:
            raise errors.invalid(f"Invalid starting_after id: {sa}", param="starting_after",
                                 code="resource_missing")
        rest = items[ids.index(sa) + 1:]
        page = rest[:limit]
        has_more = len(rest) > limit
    elif eb:
        if eb not in ids:
            raise errors.invalid(f"Invalid ending_before id: {eb}", param="ending_before",
                                 code="resource_missing")
        before = items[:ids.index(eb)]
        page = before[-limit:]
        has_more = len(before) > limit
    else:
        page = items[:limit]
        has_more = len(items) > limit
    return {"object": "list", "data": page, "has_more": has_more, "url": url}


def created_filter(ctx: Ctx) -> Callable[[dict], bool]:
    c = ctx.params.get("created")
    if c is None:
        return lambda o: True
    if isinstance(c, str):
        n = ctx.int_("created")
        return lambda o: o.get("created") == n
    if not isinstance(c, dict):
        raise errors.invalid("Invalid created filter", param="created")
    bounds = {}
    for op in ("gt", "gte", "lt", "lte"):
        if op in c:
            bounds[op] = ctx.int_(op, src=c, label=f"created[{op}]")
    unknown = set(c) - {"gt", "gte", "lt", "lte"}
    if unknown:
        raise errors.invalid(f"Received unknown parameter: created[{unknown.pop()}]", param="created")

    def ok(o):
        v = o.get("created", 0)
        return ((("gt" not in bounds) or v > bounds["gt"]) and (("gte" not in bounds) or v >= bounds["gte"])
                and (("lt" not in bounds) or v < bounds["lt"]) and (("lte" not in bounds) or v <= bounds["lte"]))
    return ok


def expand(ctx: Ctx, obj: dict, paths: list[str]) -> dict:
    obj = public(obj)
    for path in paths:
        _expand_path(ctx, obj, path.split("."), path)
    return obj


def _expand_path(ctx: Ctx, node: Any, parts: list[str], full: str) -> None:
    if not parts:
        return
    if isinstance(node, dict) and node.get("object") == "list" and parts[0] == "data":
        for item in node.get("data", []):
            _expand_path(ctx, item, parts[1:], full)
        return
    if not isinstance(node, dict) or parts[0] not in node:
        raise errors.invalid(f"This property cannot be expanded ({full}).", param="expand")
    key = parts[0]
    val = node[key]
    if isinstance(val, str):
        target = ctx.store.get(val)
        if target is None:
            raise errors.invalid(f"This property cannot be expanded ({full}).", param="expand")
        node[key] = val = public(target)
    if val is None:
        return
    _expand_path(ctx, val, parts[1:], full)
