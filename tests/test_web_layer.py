"""One web layer for both apps (issue 16): one upload reader, one download path, thin views.

The caseworker app reads bodies through the same reader as the whistleblower's
(dropbox/web/uploads.py), so its multipart POSTs get the same guards and a form without files
never has a multipart body parsed (aiohttp's `request.post()` would spool its file parts,
unencrypted, to a temporary file). Both apps stream a stored file through
dropbox/web/downloads.py, so a damaged blob is answered the same way on both sides.
"""

from __future__ import annotations

import ast
import io
import re
import sqlite3
from pathlib import Path

import aiohttp
import pytest

from dropbox.submissions import open_mailbox
from tests.support.caseworker_site import serve_site
from tests.support.data_checks import leftover_staged
from tests.support.domain import caseworker_reply, submit
from tests.support.installs import STAFF, new_install
from tests.support.live_server import AiohttpClient
from tests.support.whistleblower_site import log_in, make_install, open_site
from tests.support.whistleblower_site import submit_report as submit_over_http

REPO = Path(__file__).resolve().parent.parent
KiB = 1024
#: Frames of this many bytes, so a small file spans many stored chunks.
SMALL_CHUNKS = {"file_chunk_bytes": 4 * KiB}


# -- thin views -----------------------------------------------------------------------------------


def _imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (also inside functions and `if TYPE_CHECKING`)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("package", ["whistleblower", "caseworker"])
def test_no_view_module_reaches_past_the_domain(package: str) -> None:
    # Views parse, call the domain (submissions, casework, reports, …) and render; SQL, keys
    # and blobs are the domain's business. `from dropbox import storage` counts too.
    below = ("dropbox.storage", "dropbox.sealing", "dropbox.blobs")
    offenders = {
        f"{path.relative_to(REPO)}: {module}"
        for path in sorted((REPO / "dropbox" / package).glob("*.py"))
        for module in _imported_modules(path)
        if module in below or module.startswith(tuple(f"{b}." for b in below))
    }
    assert not offenders, sorted(offenders)


# -- one upload reader ------------------------------------------------------------------------------


def _multipart(token: str, *parts: tuple[str, str | bytes]) -> aiohttp.FormData:
    """Parts in this order after the token; bytes values are file parts named `<field>.bin`."""
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("csrf_token", token)
    for name, value in parts:
        if isinstance(value, bytes):
            form.add_field(name, value, filename=f"{name}.bin", content_type="application/octet-stream")
        else:
            form.add_field(name, value)
    return form


async def test_a_caseworker_form_without_files_refuses_a_multipart_body(tmp_path: Path) -> None:
    # Given a signed-in caseworker and a report
    async with serve_site(await new_install(tmp_path / "data", STAFF)) as site:
        report = await submit(site.services)
        alice = await site.signed_in("alice")
        # When a note (a form without files) arrives as multipart, with the right token and a file part
        form = _multipart(alice.csrf, ("text", "a note"), ("files", b"x" * 50_000))
        response = await alice.client.post(f"/en/reports/{report.report_id}/notes", data=form,
                                           allow_redirects=False)
        # Then it is refused with a clear page, and nothing was stored
        assert response.status == 400
        assert "The form could not be read" in await response.text()
        assert await site.services.store.notes(report.report_id) == []
        # while the same form url-encoded is taken
        response = await alice.post(f"/en/reports/{report.report_id}/notes", {"text": "a note"})
        assert response.status == 303


async def test_a_whistleblower_form_without_files_refuses_a_multipart_body(aiohttp_client: AiohttpClient,
                                                                          tmp_path: Path) -> None:
    # Given a whistleblower in their mailbox
    async with open_site(aiohttp_client, await make_install(tmp_path / "data")) as site:
        receipt = await submit_over_http(site.client)
        page = await log_in(site.client, receipt)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token
        # When forms without files (the meeting request, the login) arrive as multipart with a file part
        forms = {"/en/mailbox/meeting": [("kind", "call")], "/en/mailbox/login": [("receipt", receipt)]}
        for path, fields in forms.items():
            form = _multipart(token.group(1), *fields, ("files", b"x" * 50_000))
            response = await site.client.post(path, data=form, allow_redirects=False)
            # Then each is refused with a clear page before anything is parsed or stored
            assert response.status == 400, path
            assert "Your browser sent the form in a way we could not read" in await response.text()
        access = await open_mailbox(store=site.services.store, kdf=site.services.public_kdf,
                                    install=site.services.install, receipt_text=receipt)
        assert (await site.services.store.report(access.report_id)).meeting_request is None


def test_only_the_one_reader_parses_a_form_body() -> None:
    """aiohttp's `request.post()` spools file parts to a temporary file in the clear: it is called
    in one place only, `read_small_form`, which refuses anything but url-encoded first."""
    callers = []
    package = REPO / "dropbox"
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("post", "multipart") and not node.args and not node.keywords):
                callers.append(f"{path.relative_to(package)}:{node.lineno}:{node.func.attr}")
    assert [c.rsplit(":", 2)[0] for c in callers] == ["web/uploads.py"] * len(callers), callers
    assert any(c.endswith(":post") for c in callers)


async def test_a_caseworker_reply_declaring_more_than_the_limits_is_refused_before_any_read(
        tmp_path: Path) -> None:
    # Given a signed-in caseworker
    async with serve_site(await new_install(tmp_path / "data", STAFF)) as site:
        report = await submit(site.services)
        alice = await site.signed_in("alice")
        # When a reply declares a terabyte but sends only a few bytes (the rest may never come)
        headers = {"Content-Type": "multipart/form-data; boundary=x", "Content-Length": str(2**40)}
        response = await alice.client.post(f"/en/reports/{report.report_id}/reply", data=io.BytesIO(b"--x\r\n"),
                                           headers=headers, allow_redirects=False,
                                           timeout=aiohttp.ClientTimeout(total=60))
        # Then the shared reader answers at once from the declared length, as for a whistleblower
        assert response.status == 413
        assert "larger than this site accepts" in await response.text()
        assert leftover_staged(site.config) == [] and await site.services.store.messages(report.report_id) == []


async def test_a_caseworker_reply_with_a_repeated_field_is_refused_and_keeps_nothing(tmp_path: Path) -> None:
    # Given a signed-in caseworker
    async with serve_site(await new_install(tmp_path / "data", STAFF)) as site:
        report = await submit(site.services)
        alice = await site.signed_in("alice")
        # When a reply carries a file and then its text twice (no browser sends that)
        form = _multipart(alice.csrf, ("files", b"y" * 20_000), ("text", "first"), ("text", "second"))
        response = await alice.client.post(f"/en/reports/{report.report_id}/reply", data=form,
                                           allow_redirects=False)
        # Then it is refused as malformed, and the file already sealed is gone again
        assert response.status == 400
        assert leftover_staged(site.config) == [] and await site.services.store.messages(report.report_id) == []


# -- one download path --------------------------------------------------------------------------------


def _damage(db_path: Path, file_id: str, *, last: bool) -> int:
    """Flip the last byte of the file's first or last stored chunk; the number of chunks."""
    with sqlite3.connect(db_path) as db:
        seqs = [r[0] for r in db.execute("SELECT seq FROM file_chunks WHERE file_id = ? ORDER BY seq", (file_id,))]
        db.execute("UPDATE file_chunks SET data = CAST(substr(data, 1, length(data) - 1) || "
                   "CASE WHEN substr(data, -1) = x'00' THEN x'01' ELSE x'00' END AS BLOB)"
                   " WHERE file_id = ? AND seq = ?", (file_id, seqs[-1] if last else seqs[0]))
    db.close()
    return len(seqs)


async def _cut_short(response: aiohttp.ClientResponse, size: int) -> bool:
    """True if the body stopped before its declared Content-Length (the client sees a failed download)."""
    assert response.status == 200
    assert response.headers["Content-Length"] == str(size)
    try:
        body = await response.read()
    except aiohttp.ClientPayloadError:
        return True
    return len(body) < size


@pytest.mark.parametrize("where", ["first", "last"])
async def test_the_caseworker_app_never_serves_a_damaged_file_as_complete(tmp_path: Path, where: str) -> None:
    data = bytes(range(256)) * 240  # 60 KiB: 15 frames of 4 KiB
    async with serve_site(await new_install(tmp_path / "data", STAFF, **SMALL_CHUNKS)) as site:
        report = await submit(site.services, files={"evidence.bin": data})
        (stored,) = await site.services.store.files(report.report_id)
        assert _damage(site.config.db_path, stored.id, last=where == "last") >= 3
        alice = await site.signed_in("alice")
        response = await alice.get(f"/en/reports/{report.report_id}/files/{stored.id}")
        if where == "first":
            # Damage found before a byte went out: a page saying what happened, 409 as for every
            # known and named damage (caseworker/routes.py says why not 5xx)
            assert response.status == 409
            assert "could not be opened" in await response.text()
        else:
            # Damage found later: the response stops short of the declared length
            assert await _cut_short(response, len(data))


@pytest.mark.parametrize("where", ["first", "last"])
async def test_the_mailbox_never_serves_a_damaged_file_as_complete(aiohttp_client: AiohttpClient, tmp_path: Path,
                                                                  where: str) -> None:
    data = bytes(range(256)) * 240
    async with open_site(aiohttp_client, await make_install(tmp_path / "data", **SMALL_CHUNKS)) as site:
        receipt = await submit_over_http(site.client)
        await caseworker_reply(site.services, receipt, "a file", {"reply.bin": data})
        page = await log_in(site.client, receipt)
        (link, file_id) = re.findall(r'href="(/en/mailbox/files/([0-9a-f]{32}))"', page)[0]
        assert _damage(site.config.db_path, file_id, last=where == "last") >= 3
        response = await site.client.get(link)
        if where == "first":
            assert response.status == 409
            assert "could not be opened" in await response.text()
        else:
            assert await _cut_short(response, len(data))
        access = await open_mailbox(store=site.services.store, kdf=site.services.public_kdf,
                                    install=site.services.install, receipt_text=receipt)
        assert access.report_id  # the mailbox itself still opens
