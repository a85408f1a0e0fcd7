"""Message catalogues: the en/da/sv translations, usable without the web layer.

Marking a string (`N_`) and compiling a language's catalogues (`load_translations`) are needed by
domain modules too (outcome names, cleaning findings, the e-mail notice), so they live here, apart
from the web's rendering in `dropbox/web/i18n.py`. Catalogues are compiled in memory from the
`.po` files at startup, so no binary `.mo` files are committed.
"""

from __future__ import annotations

import io
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

PACKAGE_DIR = Path(__file__).resolve().parent
LOCALE_DIR = PACKAGE_DIR / "locale"


def N_(message: str) -> str:
    """Mark a string for extraction without translating it yet (it is translated at render)."""
    return message


def read_catalog(locale_dir: Path, lang: str) -> Catalog:
    """All `<locale_dir>/<lang>/LC_MESSAGES/*.po` merged: messages.po first, then the others by name.

    Each side of the app keeps its own catalogue file (whistleblower.po, caseworker.po) so that
    translations can be added to one without touching the other.
    """
    folder = locale_dir / lang / "LC_MESSAGES"
    paths = sorted(folder.glob("*.po"), key=lambda p: (p.name != "messages.po", p.name))
    if not paths:
        raise FileNotFoundError(folder / "messages.po")
    first, *others = (_read_po(path, lang) for path in paths)
    for catalog in others:
        for message in catalog:
            if message.id:
                first[message.id] = message
    return first


def _read_po(path: Path, lang: str) -> Catalog:
    with path.open("rb") as po_file:
        return read_po(po_file, locale=lang, abort_invalid=True)


def load_translations(locale_dir: Path, lang: str) -> Translations:
    """Compile the language's catalogues (see read_catalog) in memory.

    Fuzzy and empty entries are left out by write_mo, so they fall back to the English msgid
    rather than showing an unreviewed translation. A malformed .po stops startup.
    """
    buffer = io.BytesIO()
    write_mo(buffer, read_catalog(locale_dir, lang))
    buffer.seek(0)
    return Translations(buffer, domain="messages")
