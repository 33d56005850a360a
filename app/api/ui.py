"""`/admin/ui`: the server-rendered status page (no JavaScript build, no client framework).

Authentication, why two ways:
* A person signs in once through a form that posts the admin token; the answer sets an HttpOnly,
  SameSite=Strict cookie scoped to `/admin/ui` (Secure over HTTPS). The cookie does not hold the
  token: it holds an expiry and an HMAC of it keyed by the token, so it cannot be turned back into
  the token, it expires after `SESSION_TTL_S`, and rotating ADMIN_API_TOKEN ends every session.
  Nothing secret ever travels in a URL. Sessions are stateless (any replica can check them, no
  session store); signing out deletes the cookie, so a copied cookie stays valid until it expires.
* Scripts and curl send `Authorization: Bearer <ADMIN_API_TOKEN>`, as on every `/admin/*` path.

The page refreshes its content every few seconds with a small inline script (fetching
`/admin/ui/partial`), or with a meta refresh when scripts are off. A strict Content-Security-Policy
with a per-response nonce allows exactly that inline script and style and nothing else.
These routes are HTML for people, not API: they stay out of the OpenAPI document. The HTML is
Jinja2 templates (`app/templates/`, rendered through `app/api/ui_templates.py` with autoescape on);
this module only picks the template and hands it the status page's data.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.api import ui_templates
from app.api.deps import ContainerDep
from app.core.container import Container
from app.core.errors import problem_response
from app.core.security import constant_time_equals
from app.services.ops import status_page

router = APIRouter(prefix="/admin/ui", include_in_schema=False)

COOKIE_NAME = "sb_admin_session"
COOKIE_PATH = "/admin/ui"
SESSION_TTL_S = 12 * 3600
REFRESH_INTERVAL_MS = 3000
MAX_LOGIN_BODY = 4096


# ============================================================================== sessions


def _session_mac(admin_token: str, expires: int) -> str:
    return hmac.new(admin_token.encode(), f"sb-ui-session:{expires}".encode(), hashlib.sha256).hexdigest()


def make_session_cookie(admin_token: str, now: float | None = None) -> str:
    expires = int((time.time() if now is None else now) + SESSION_TTL_S)
    return f"{expires}.{_session_mac(admin_token, expires)}"


def session_valid(cookie: str | None, admin_token: str, now: float | None = None) -> bool:
    if not cookie or "." not in cookie:
        return False
    raw_expires, _, mac = cookie.partition(".")
    if not raw_expires.isdigit():
        return False
    expires = int(raw_expires)
    if expires < (time.time() if now is None else now):
        return False
    return constant_time_equals(mac, _session_mac(admin_token, expires))


def _bearer_token(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def is_authenticated(request: Request, container: Container) -> bool:
    """The bearer header (scripts) or the session cookie (people)."""
    token = _bearer_token(request)
    if token is not None:
        return container.authenticator.admin_name(token) is not None
    return session_valid(request.cookies.get(COOKIE_NAME), container.ui_cookie_key)


# ============================================================================== rendering


def _security_headers(nonce: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; "
            "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        ),
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
    }


def _page(template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    """A whole page, with a fresh nonce on its inline style and script and the CSP allowing exactly them."""
    nonce = secrets.token_urlsafe(16)
    page = ui_templates.render(template, nonce=nonce, **context)
    return HTMLResponse(page, status_code=status, headers=_security_headers(nonce))


def _login_page(error: str | None = None, status: int = 200) -> HTMLResponse:
    return _page("login.html", status=status, error=error)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


# ============================================================================== routes


@router.get("", response_class=HTMLResponse)
async def dashboard(request: Request, container: ContainerDep) -> Response:
    if not is_authenticated(request, container):
        if _bearer_token(request) is not None:  # a script with a wrong token: say so, do not redirect
            return problem_response(401, "Unauthorized", "Invalid token.", type_slug="unauthorized")
        return RedirectResponse("/admin/ui/login", status_code=303, headers={"Cache-Control": "no-store"})
    view = await status_page.collect(container)
    return _page(
        "dashboard.html",
        view=view,
        now=view.generated_at,
        interval_ms=REFRESH_INTERVAL_MS,
        refresh_s=max(2, REFRESH_INTERVAL_MS // 1000),
    )


@router.get("/partial", response_class=HTMLResponse)
async def partial(request: Request, container: ContainerDep) -> Response:
    """The refreshable content alone (what the page's script swaps in)."""
    if not is_authenticated(request, container):
        return Response(status_code=401, headers={"Cache-Control": "no-store"})
    view = await status_page.collect(container)
    content = ui_templates.render("status/content.html", view=view, now=view.generated_at)
    return HTMLResponse(content, headers={"Cache-Control": "no-store"})


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, container: ContainerDep) -> Response:
    if is_authenticated(request, container):
        return RedirectResponse("/admin/ui", status_code=303)
    return _login_page()


@router.post("/login")
async def login(request: Request, container: ContainerDep) -> Response:
    """Form post of the admin token (application/x-www-form-urlencoded; no multipart parser needed)."""
    body = await request.body()
    token = ""
    if len(body) <= MAX_LOGIN_BODY:
        values = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
        token = (values.get("token") or [""])[0].strip()
    if not token or container.authenticator.admin_name(token) is None:
        return _login_page("That token is not valid.", status=401)
    response = RedirectResponse("/admin/ui", status_code=303, headers={"Cache-Control": "no-store"})
    response.set_cookie(
        COOKIE_NAME,
        make_session_cookie(container.ui_cookie_key),
        max_age=SESSION_TTL_S,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    response = RedirectResponse("/admin/ui/login", status_code=303, headers={"Cache-Control": "no-store"})
    response.delete_cookie(COOKIE_NAME, path=COOKIE_PATH, httponly=True, samesite="strict", secure=_secure(request))
    return response
