"""The security headers every response of both apps must carry: one table, written out by hand.

Written out rather than read from dropbox/web/middleware.py, so a change there that weakens a
header fails the tests instead of changing what they expect.
"""

from __future__ import annotations

from collections.abc import Mapping

from dropbox.web.middleware import SESSION_CACHE_CONTROL

SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Server": "dropbox",
}

#: Features the Permissions-Policy header must switch off (it lists more; these must be there).
PERMISSIONS_OFF = ("camera", "microphone", "geolocation", "interest-cohort")


def expected_headers(*, cacheable: bool = False) -> Mapping[str, str]:
    """SECURITY_HEADERS; a `cacheable` response (the stylesheet, answered 200) may be kept for the session."""
    return {**SECURITY_HEADERS, "Cache-Control": SESSION_CACHE_CONTROL} if cacheable else SECURITY_HEADERS


def headers_that_differ(headers: Mapping[str, str], *, cacheable: bool = False) -> dict[str, str | None]:
    """{name: what was sent} for every security header missing or not as expected; {} if all are right."""
    wrong: dict[str, str | None] = {k: headers.get(k) for k, v in expected_headers(cacheable=cacheable).items()
                                    if headers.get(k) != v}
    policy = headers.get("Permissions-Policy", "")
    if any(f"{feature}=()" not in policy for feature in PERMISSIONS_OFF):
        wrong["Permissions-Policy"] = headers.get("Permissions-Policy")
    return wrong


def assert_security_headers(headers: Mapping[str, str], *, cacheable: bool = False) -> None:
    assert headers_that_differ(headers, cacheable=cacheable) == {}
