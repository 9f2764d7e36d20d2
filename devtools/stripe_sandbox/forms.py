"""Decode Stripe's form encoding (``a[b][c]=1``, ``a[0]=x``, ``a[]=y``) into nested dicts/lists."""
from __future__ import annotations

import re
from urllib.parse import parse_qsl

_TOKEN = re.compile(r"\[([^\[\]]*)\]")


class FormError(ValueError):
    pass


def _split_key(key: str) -> list[str]:
    i = key.find("[")
    if i <= 0:
        return [key]
    head, rest = key[:i], key[i:]
    parts = [head]
    pos = 0
    for m in _TOKEN.finditer(rest):
        if m.start() != pos:
            raise FormError(f"Invalid parameter name: {key}")
        parts.append(m.group(1))
        pos = m.end()
    if pos != len(rest):
        raise FormError(f"Invalid parameter name: {key}")
    return parts


def _listify(node):
    """Turn dicts whose keys are all integer strings (or the append marker) into lists."""
    if isinstance(node, dict):
        for k in list(node):
            node[k] = _listify(node[k])
        if node and all(isinstance(k, str) and k.isdigit() for k in node):
            return [node[k] for k in sorted(node, key=int)]
        return node
    if isinstance(node, list):
        return [_listify(v) for v in node]
    return node


def parse_form(body: str) -> dict:
    result: dict = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        parts = _split_key(key)
        node = result
        for idx, part in enumerate(parts):
            last = idx == len(parts) - 1
            if part == "":
                # "a[]" append syntax
                if idx == 0:
                    raise FormError(f"Invalid parameter name: {key}")
                raise FormError(f"Invalid parameter name: {key}")
            nxt_append = not last and parts[idx + 1] == ""
            if last:
                if isinstance(node, list):
                    node.append(value)
                else:
                    if isinstance(node.get(part), (dict, list)):
                        raise FormError(f"Conflicting values for parameter {parts[0]}")
                    node[part] = value
            elif nxt_append:
                lst = node.setdefault(part, []) if isinstance(node, dict) else None
                if not isinstance(lst, list):
                    raise FormError(f"Conflicting values for parameter {parts[0]}")
                if idx + 2 == len(parts):
                    lst.append(value)
                    break
                # a[][b]=1: each "[]" followed by a key starts a new element when the key repeats
                sub = parts[idx + 2]
                if not lst or not isinstance(lst[-1], dict) or sub in lst[-1]:
                    lst.append({})
                node = lst[-1]
                # skip the "" part
                rest = parts[idx + 2:]
                _assign(node, rest, value, key)
                break
            else:
                child = node.get(part)
                if child is None:
                    child = {}
                    node[part] = child
                elif not isinstance(child, dict):
                    raise FormError(f"Conflicting values for parameter {parts[0]}")
                node = child
    return _listify(result)


def _assign(node: dict, parts: list[str], value: str, key: str) -> None:
    for idx, part in enumerate(parts):
        if part == "":
            raise FormError(f"Invalid parameter name: {key}")
        if idx == len(parts) - 1:
            node[part] = value
        else:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise FormError(f"Conflicting values for parameter {parts[0]}")
            node = child


def parse_query(qs: str) -> dict:
    return parse_form(qs)
