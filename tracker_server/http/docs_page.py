"""/api/docs: the API description as one static HTML page, rendered from the OpenAPI
schema on the server.

Swagger UI and ReDoc load scripts from a CDN and run inline scripts, which the
dashboard's Content-Security-Policy forbids and which would need internet access (often
absent on clusters). This page needs neither: no script at all, one stylesheet from this
server. Tools that want the schema read /api/openapi.json.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import Any

from tracker_server.http.encoding import ENCODING_DOC
from tracker_server.http.errors import HTTP_STATUS

CSS = """body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
h2{margin-top:2.5rem;font-size:1.1rem}code,pre{font:13px ui-monospace,monospace}
pre{background:#f4f4f4;padding:.6rem;overflow:auto}table{border-collapse:collapse}
td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left;vertical-align:top}
.verb{font-weight:bold;margin-right:.5rem}
"""

_EXTRA_CODES = ("METHOD_NOT_ALLOWED", "PAYLOAD_TOO_LARGE", "UNSUPPORTED_MEDIA_TYPE",
                "INTERNAL")


def _e(text: Any) -> str:
    return html.escape(str(text))


def _schema_name(schema: Mapping[str, Any]) -> str:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        return f'<a href="#schema-{_e(name)}">{_e(name)}</a>'
    return f"<code>{_e(json.dumps(schema)[:200])}</code>"


def _operation(path: str, verb: str, op: Mapping[str, Any]) -> str:
    parts = [f'<h2 id="{_e(op.get("operationId", path))}"><span class="verb">{_e(verb.upper())}'
             f"</span><code>{_e(path)}</code> — {_e(op.get('summary', ''))}</h2>"]
    if op.get("description"):
        parts.append(f"<p>{_e(op['description'])}</p>")
    params = op.get("parameters", [])
    if params:
        rows = "".join(
            f"<tr><td><code>{_e(p['name'])}</code></td><td>{_e(p['in'])}</td>"
            f"<td>{'yes' if p.get('required') else ''}</td>"
            f"<td>{_schema_name(p.get('schema', {}))}</td>"
            f"<td>{_e(p.get('description', p.get('schema', {}).get('description', '')))}</td></tr>"
            for p in params)
        parts.append("<table><tr><th>parameter</th><th>in</th><th>required</th><th>type</th>"
                     f"<th></th></tr>{rows}</table>")
    body = op.get("requestBody", {}).get("content", {}).get("application/json")
    if body:
        parts.append(f"<p>Body: {_schema_name(body.get('schema', {}))}</p>")
    answers = []
    for status, resp in op.get("responses", {}).items():
        schema = resp.get("content", {}).get("application/json", {}).get("schema")
        answers.append(f"<li><code>{_e(status)}</code> {_e(resp.get('description', ''))}"
                       f"{' — ' + _schema_name(schema) if schema else ''}</li>")
    parts.append(f"<ul>{''.join(answers)}</ul>")
    return "\n".join(parts)


def render(schema: Mapping[str, Any]) -> str:
    """The whole page."""
    info = schema.get("info", {})
    ops = [_operation(path, verb, op) for path, item in schema.get("paths", {}).items()
           for verb, op in item.items()]
    codes = [c.value for c in HTTP_STATUS] + list(_EXTRA_CODES)
    errors = "".join(f'<li id="error-{_e(c.lower().replace("_", "-"))}"><code>{_e(c)}</code>'
                     f"{' — HTTP ' + str(HTTP_STATUS[k]) if (k := _code(c)) else ''}</li>"
                     for c in codes)
    models = "".join(
        f'<h3 id="schema-{_e(name)}">{_e(name)}</h3><pre>{_e(json.dumps(s, indent=2))}</pre>'
        for name, s in sorted(schema.get("components", {}).get("schemas", {}).items()))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(info.get('title', 'API'))}</title>
<link rel="stylesheet" href="/api/docs.css"></head><body>
<h1>{_e(info.get('title', ''))} <small>{_e(info.get('version', ''))}</small></h1>
<p>{_e(info.get('description', ''))}</p>
<p>Machine-readable: <a href="/api/openapi.json">/api/openapi.json</a>.</p>
<p>{_e(ENCODING_DOC)}</p>
<h2>Errors</h2><p>Every error is <code>application/problem+json</code>:
<code>{{type, title, status, detail, instance, code, request_id, errors?: [{{field,
message, position?}}]}}</code>; 429 and 503 carry <code>Retry-After</code>.</p>
<ul>{errors}</ul>
{''.join(ops)}
<h2>Schemas</h2>{models}
</body></html>
"""


def _code(name: str) -> Any:
    return next((c for c in HTTP_STATUS if c.value == name), None)
