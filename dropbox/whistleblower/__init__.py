"""The public, whistleblower side: submit a report, keep the receipt, use the anonymous mailbox.

Every page works with JavaScript disabled (Tor Browser at "Safest"). The modules:

- `routes.py`     `add_whistleblower_routes(app)`: the URL map, nothing else.
- `submit.py`     thin views of the submission path (form, receipt, confirmation). No cookie, ever.
- `mailbox.py`    thin views of the mailbox (receipt login, inbox, reply, file download, logout).
- `display.py`    plain formatting for pages: days, status words, cleaning lines.

Bodies are read by `dropbox/web/uploads.py` and files sent by `dropbox/web/downloads.py`, the same
for both apps; the sealed token of the confirmation step is `dropbox/receipt_tokens.py`.

Translations of this side live in `dropbox/locale/<lang>/LC_MESSAGES/whistleblower.po` (merged
over messages.po at startup, see i18n.read_catalog). To refresh them after changing a string,
extract only this side's files with a mapping that matches paths relative to each folder:

    printf '[python: **.py]\n[jinja2: **.html]\ntrimmed = true\nnewstyle_gettext = true\n' > /tmp/wb.cfg
    .venv/bin/pybabel extract -F /tmp/wb.cfg -k N_ -k translate:2 --add-location=file -w 100 \
        -o /tmp/wb.pot dropbox/whistleblower dropbox/templates/whistleblower
    .venv/bin/pybabel update -D whistleblower -i /tmp/wb.pot -d dropbox/locale -w 100 --ignore-obsolete

then translate the new or fuzzy entries in da and sv (tests/test_i18n.py fails until they are).
"""
