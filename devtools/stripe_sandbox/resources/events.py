from __future__ import annotations

from .. import errors
from ..core import Ctx, created_filter, list_object


def retrieve(ctx: Ctx, id):
    ctx.allow()
    return ctx.load("event", id, "event")


def _matches(pattern: str, t: str) -> bool:
    if pattern.endswith("*"):
        return t.startswith(pattern[:-1])
    return pattern == t


def list_(ctx: Ctx):
    ctx.allow("type", "types", "created", "limit", "starting_after", "ending_before", "delivery_success")
    t = ctx.str_("type")
    types = ctx.params.get("types")
    if types is not None:
        if isinstance(types, str):
            types = [types]
        if not isinstance(types, list) or not all(isinstance(x, str) for x in types):
            raise errors.invalid("Invalid array: types", param="types")
        if t:
            raise errors.invalid("You may only specify one of these parameters: type, types.", param="types")
    cf = created_filter(ctx)

    def ok(e):
        if t and not _matches(t, e["type"]):
            return False
        if types and not any(_matches(p, e["type"]) for p in types):
            return False
        return cf(e)
    return list_object(ctx, ctx.store.all("event", ok), "/v1/events")


def register(r):
    r.add("GET", "/v1/events", list_)
    r.add("GET", "/v1/events/{id}", retrieve)
