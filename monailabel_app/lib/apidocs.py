"""The server's API page (``/``, and ``/docs``), served without anything from another host.

MONAI Label's ``/`` is FastAPI's Swagger UI page, whose script and style come from a CDN
(cdn.jsdelivr.net), and ``/docs`` is ReDoc from a CDN with Google fonts: offline (a hospital
network, a laptop on a plane) both stay blank. ``serve_api_page_offline`` replaces the two:

- where the Python package ``swagger-ui-bundle`` is installed, ``/`` and ``/docs`` are the same
  interactive Swagger UI, its script and style served by the app at ``/api-assets/``;
- else a plain HTML page of the API made here from the server's OpenAPI schema (each route: method,
  path, summary, parameters; ``/openapi.json`` linked), with no script and no outside link.
"""

from __future__ import annotations

import html
import logging
import os
import sys
from typing import Any, Dict, Optional

from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

logger = logging.getLogger(__name__)

ASSETS = "/api-assets"
PAGES = ("/", "/docs")
METHODS = ("get", "post", "put", "delete", "patch")


def swagger_ui_assets() -> Optional[str]:
    """The folder of Swagger UI's script and style shipped by the ``swagger-ui-bundle`` package,
    or None where it is not installed (or does not hold them)."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return None
    folder = str(swagger_ui_path)
    return folder if all(os.path.isfile(os.path.join(folder, f)) for f in ("swagger-ui-bundle.js", "swagger-ui.css")) else None


def swagger_page(app) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=app.openapi_url,
        title=f"{app.title} - APIs",
        swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS}/swagger-ui.css",
        swagger_favicon_url="/favicon.ico",
        swagger_ui_parameters={"defaultModelsExpandDepth": -1, "validatorUrl": None},  # no spec sent to validator.swagger.io
    )


def _parameters(operation: Dict[str, Any], schema: Dict[str, Any]) -> str:
    names = [f"{p['name']} ({p.get('in', '')})" for p in operation.get("parameters", [])]
    body = ((operation.get("requestBody") or {}).get("content") or {})
    for media in body.values():
        ref = (media.get("schema") or {}).get("$ref", "")
        fields = (schema.get("components", {}).get("schemas", {}).get(ref.rsplit("/", 1)[-1], {}) or {}).get("properties", {}) if ref else {}
        names += [f"{name} (body)" for name in fields]
    return ", ".join(names)


def plain_page(app) -> HTMLResponse:
    """The API as a plain HTML page: no script, no style or link to another host."""
    schema = app.openapi()
    title = html.escape(f"{app.title} - APIs")
    rows = []
    for path, item in sorted(schema.get("paths", {}).items()):
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            summary = operation.get("summary") or operation.get("operationId") or ""
            rows.append(
                f"<tr><td class=m>{method.upper()}</td><td><code>{html.escape(path)}</code></td>"
                f"<td>{html.escape(summary)}</td><td>{html.escape(_parameters(operation, schema))}</td></tr>"
            )
    body = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title><link rel="icon" href="/favicon.ico">
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border-bottom:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}}td.m{{font-weight:bold}}</style>
</head><body><h1>{title}</h1>
<p>Version {html.escape(str(schema.get('info', {}).get('version', '')))}. The OpenAPI schema: <a href="{html.escape(app.openapi_url)}">{html.escape(app.openapi_url)}</a>.
This page is made by the server itself and works offline; with the Python package <code>swagger-ui-bundle</code>
installed, it is the interactive Swagger UI instead.</p>
<table><tr><th>method</th><th>path</th><th>summary</th><th>parameters</th></tr>
{chr(10).join(rows)}
</table></body></html>"""
    return HTMLResponse(body)


def serve_api_page_offline(app=None) -> str:
    """Replace MONAI Label's ``/`` and ``/docs`` (CDN scripts) by pages served from the app alone;
    returns which: "swagger-ui" (local assets) or "plain"."""
    if app is None:
        module = sys.modules.get("monailabel.app")
        app = getattr(module, "app", None)
        if app is None:
            return ""
    assets = swagger_ui_assets()
    page = (lambda: swagger_page(app)) if assets else (lambda: plain_page(app))
    app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) not in PAGES + (ASSETS,)]
    if assets:
        app.mount(ASSETS, StaticFiles(directory=assets), name="api-assets")
    for path in PAGES:
        app.add_api_route(path, page, methods=["GET"], include_in_schema=False, response_class=HTMLResponse)
    kind = "swagger-ui" if assets else "plain"
    logger.info(f"API page at / and /docs: {'Swagger UI with its assets at ' + ASSETS if assets else 'plain HTML (no swagger-ui-bundle package)'}, nothing from another host")
    return kind
