"""Export and Forward on the report page: a signed ZIP of the case, or the same sealed to a
receiving authority's key (dropbox/export.py, dropbox/forwarding.py).

Both are CSRF-protected POSTs whose answer is the download itself, streamed as it is made: the
ZIP is never whole in memory, nor anywhere on disk. Chunked transfer, no Content-Length: if a
file fails authentication part way, the connection is cut before the final chunk and the browser
marks the download failed instead of keeping a silently short file.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping

from aiohttp import web

from dropbox import export, forwarding
from dropbox.caseworker import forms, labels
from dropbox.caseworker.staff import Staff, require_form, services
from dropbox.web.i18n import N_, request_language
from dropbox.web.middleware import UserError

BAD_KEY = N_("This is not a recipient key, or part of it was changed or cut off. Paste the whole line the "
             "receiving authority gave you: it starts with dbxr1:")
EXPORT_DAMAGED = N_("This report cannot be exported: a part of it could not be opened because its stored copy is "
                    "damaged (the report page shows which). Please tell the operator.")
#: A pasted key is one line of 78 characters; allow for spaces and line breaks around it.
MAX_KEY_CHARS = 400


async def _prepare(request: web.Request, staff: Staff, form: Mapping[str, object], *,
                   forwarded_to: bytes | None = None) -> export.CaseExport:
    report_id = forms.hex_id(request.match_info["report_id"])
    svc = services(request)
    names = {c.id: c.name for c in await svc.store.caseworkers()}
    wording = export.Wording(lang=request_language(request), status=lambda value: labels.status(request, value),
                             action=lambda entry: labels.audit_action(request, entry, names),
                             actor=lambda entry: labels.actor(request, entry, names))
    try:
        return await export.prepare_export(
            store=svc.store, blobs=svc.blobs, session=staff.account, report_id=report_id, signer=svc.signer,
            include_notes=forms.checkbox(form, "notes"), include_originals=forms.checkbox(form, "originals"),
            wording=wording, default_lang=svc.config.default_language, forwarded_to=forwarded_to)
    except export.ReportDamaged as e:
        raise UserError(409, EXPORT_DAMAGED) from e


async def _in_threads(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """A blocking iterator (decryption, database reads) advanced one step at a time in a worker
    thread, and closed there at the end, also when the client went away. Empty pieces are
    skipped: an empty write must never look like the chunked encoding's final chunk."""
    try:
        while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
            if chunk:
                yield chunk
    finally:
        await asyncio.to_thread(getattr(chunks, "close", lambda: None))


async def _send(request: web.Request, chunks: Iterator[bytes], *, name: str, content_type: str) -> web.StreamResponse:
    """Stream the export. The first piece is made before any header, so an export that cannot
    start gets an error page rather than a broken download. Its length is not known ahead (the
    ZIP is made as it goes), hence chunked, unlike a single file's download; `name` is ASCII by
    construction (export.export_file_name)."""
    pieces = _in_threads(chunks)
    try:
        first = await anext(pieces, b"")
        response = web.StreamResponse(headers={"Content-Type": content_type,
                                               "Content-Disposition": f'attachment; filename="{name}"'})
        response.enable_chunked_encoding()
        await response.prepare(request)
        if first:
            await response.write(first)
        async for piece in pieces:
            await response.write(piece)
        await response.write_eof()
        return response
    finally:
        await pieces.aclose()


async def export_case(request: web.Request) -> web.StreamResponse:
    staff, form = await require_form(request)
    prepared = await _prepare(request, staff, form)
    return await _send(request, export.stream_export(prepared), name=export.export_file_name(prepared),
                       content_type="application/zip")


async def forward_case(request: web.Request) -> web.StreamResponse:
    """The export sealed to the key pasted in the form; a key that is not one is a clear 400,
    before anything is read or audited."""
    staff, form = await require_form(request)
    try:
        recipient = forwarding.parse_public(forms.text(form, "recipient", max_chars=MAX_KEY_CHARS))
    except forwarding.RecipientKeyError as e:
        raise UserError(400, BAD_KEY) from e
    prepared = await _prepare(request, staff, form, forwarded_to=recipient)
    return await _send(request, forwarding.sealed(export.stream_export(prepared), recipient=recipient),
                       name=export.export_file_name(prepared, sealed=True), content_type="application/octet-stream")
