"""Reading the apps' pages and filling their forms, as a browser without JavaScript does.

One set of scrapers for every test: a hidden field's value (the CSRF token, the receipt token),
the receipt code, an element's text, what a person reads, the links a page offers. Each comes
in two forms where tests need both: `find_…` answers None when the page has none (a test of a
refusal looks for that), the other asserts it is there. And the three ways of writing a form:
`report_form` (aiohttp's FormData, in document order), `ordered_form` (aiohttp's FormData, parts in
the order given) and `multipart` (bytes encoded here, so a test controls the field order, can stream
a body slowly and send the exact bytes a browser would).
"""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Mapping, Sequence
from html.parser import HTMLParser

from aiohttp import FormData

# -- scrapers ------------------------------------------------------------------------------------

_INPUT = re.compile(r"<input\b[^>]*>", re.IGNORECASE)
_RECEIPT_SHOWN = re.compile(r"\d{4}( \d{4}){5}")


def find_input_value(page: str, name: str) -> str | None:
    """The value of the first <input name=NAME> on the page (attributes in any order), or None."""
    wanted = re.compile(r'\bname\s*=\s*"' + re.escape(name) + '"')
    for tag in _INPUT.findall(page):
        if wanted.search(tag):
            value = re.search(r'\bvalue\s*=\s*"([^"]*)"', tag)
            if value:
                return html.unescape(value.group(1))
    return None


def input_value(page: str, name: str) -> str:
    value = find_input_value(page, name)
    assert value is not None, f"no {name} field on the page"
    return value


def find_csrf(page: str) -> str | None:
    """The form's CSRF token, or None when the page has no form carrying one."""
    return find_input_value(page, "csrf_token")


def csrf_in(page: str) -> str:
    return input_value(page, "csrf_token")


def token_in(page: str) -> str:
    """The receipt page's one-time token (the "I have noted it" form)."""
    return input_value(page, "receipt_token")


class _ElementText(HTMLParser):
    def __init__(self, element_id: str) -> None:
        super().__init__(convert_charrefs=True)
        self.element_id = element_id
        self.depth = 0
        self.found = False
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.depth:
            self.depth += 1
        elif dict(attrs).get("id") == self.element_id and not self.found:
            self.found = True
            self.depth = 1

    def handle_endtag(self, tag: str) -> None:
        if self.depth:
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if self.depth:
            self.parts.append(data)


def element_text(page: str, element_id: str) -> str | None:
    """The text inside the element with id=`element_id` (tags dropped, entities decoded), or None."""
    parser = _ElementText(element_id)
    parser.feed(page)
    parser.close()
    return "".join(parser.parts) if parser.found else None


def receipt_digits(text: str) -> str:
    """A receipt as typed or shown, reduced to its digits (spaces and dashes dropped)."""
    return "".join(ch for ch in text if not ch.isspace() and ch != "-")


def find_receipt(page: str) -> str | None:
    """The receipt shown in id="receipt", as shown ('1234 5678 9012 3456 7890 1234'), or None if
    the page shows none, or something that is not 24 digits in six groups."""
    text = element_text(page, "receipt")
    if text is None:
        return None
    shown = " ".join(text.split())
    return shown if _RECEIPT_SHOWN.fullmatch(shown) else None


def find_receipt_digits(page: str) -> str | None:
    """The 24 digits of the receipt shown in id="receipt", or None: what a client types back,
    and what tests that make up receipts of the same shape (floods, wrong guesses) count with."""
    shown = find_receipt(page)
    return receipt_digits(shown) if shown is not None else None


def receipt_in(page: str) -> str:
    """The receipt code as shown, six groups of four digits: '1234 5678 9012 3456 7890 1234'."""
    text = element_text(page, "receipt")
    assert text is not None, "no receipt on the page"
    shown = find_receipt(page)
    assert shown is not None, f"not six groups of four digits: {text!r}"
    return shown


def visible_text(page: str) -> str:
    """Roughly what a person reads: tags dropped, entities decoded, whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def hrefs(page: str, pattern: str) -> list[str]:
    """Every link target on the page that matches `pattern` whole, in document order (e.g.
    r"/en/mailbox/files/[0-9a-f]{32}")."""
    return [html.unescape(h) for h in re.findall(r'href="(' + pattern + ')"', page)]


# -- filling forms -------------------------------------------------------------------------------

Field = tuple[str, str | bytes, str | None]
"""(name, value, filename): a file part when filename is not None."""


def multipart(fields: Sequence[Field], *, boundary: str | None = None) -> tuple[bytes, str]:
    """multipart/form-data as a browser sends it; returns (body, Content-Type)."""
    boundary = boundary or "----robust" + secrets.token_hex(12)
    out = bytearray()
    for name, value, filename in fields:
        out += f"--{boundary}\r\n".encode()
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"Content-Disposition: {disposition}\r\n".encode()
        if filename is not None:
            out += b"Content-Type: application/octet-stream\r\n"
        out += b"\r\n"
        out += value.encode("utf-8") if isinstance(value, str) else value
        out += b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


OrderedPart = tuple[str, str | tuple[str, bytes]]
"""(name, value) or (name, (filename, data)): a file part when the value is a pair."""


def ordered_form(parts: Sequence[OrderedPart]) -> FormData:
    """aiohttp's FormData with the parts in exactly this order, always multipart (the caseworker
    forms that carry files must have the CSRF token first; a test that puts it later sees the refusal)."""
    form = FormData(default_to_multipart=True)
    for name, value in parts:
        if isinstance(value, tuple):
            form.add_field(name, value[1], filename=value[0], content_type="application/octet-stream")
        else:
            form.add_field(name, value)
    return form


def submission_fields(*, text: str, contact: str | None = None, answers: dict[str, str] | None = None,
                      files: Sequence[tuple[str, bytes]] = (), channel: str = "default",
                      clean: bool = False) -> list[Field]:
    """The submission form's fields for `multipart`, in the order the tests of the server process use.
    `clean`: the "remove hidden information" box ticked (it only counts on a channel whose policy
    lets the whistleblower choose; unticked, a browser sends no field)."""
    fields: list[Field] = [("channel", channel, None), ("text", text, None)]
    if contact is not None:
        fields.append(("contact", contact, None))
    for key, value in (answers or {}).items():
        fields.append((f"answer_{key}", value, None))
    fields += [("files", data, name) for name, data in files]
    if clean:
        fields.append(("clean", "1", None))
    return fields


def report_form(text: str = "", *, files: Mapping[str, bytes] | None = None, channel: str | None = "default",
                answers: Mapping[str, str] | None = None, contact: str = "") -> FormData:
    """The submission form as a browser sends it: in document order, file names as raw UTF-8, and
    an empty file part when no file is chosen."""
    form = FormData(quote_fields=False)
    if channel is not None:
        form.add_field("channel", channel)
    form.add_field("text", text)
    for question_id, answer in (answers or {}).items():
        form.add_field(f"answer_{question_id}", answer)
    if files:
        for name, data in files.items():
            form.add_field("files", data, filename=name, content_type="application/octet-stream")
    else:
        form.add_field("files", b"", filename="", content_type="application/octet-stream")
    form.add_field("contact", contact)
    return form
