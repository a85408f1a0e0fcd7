"""The caseworkers' web app: thin views over dropbox.casework, dropbox.channels and dropbox.totp.

Every page works with JavaScript disabled; there is no script at all. The modules:

- `routes.py`    `add_caseworker_routes(app)`: the URL map and the one place domain errors become HTTP.
- `staff.py`     the signed-in session (its payload holds the unwrapped key) and `require()`.
- `login.py`     sign in and out (a double-submit token protects the login form before any session).
- `cases.py`     the report list, the report page and every action on a report, file downloads.
- `settings.py`  a caseworker's own passphrase, two-step login and notice address.
- `admin.py`     channels, accounts and the audit log, for the admin role only.
- `forms.py`     ids and fields; bodies through the reader both apps share (`dropbox/web/uploads.py`).
- `labels.py`    words for stored values (statuses, audit actions).

Translations of this side live in `dropbox/locale/<lang>/LC_MESSAGES/caseworker.po` (merged over
messages.po at startup, see i18n.read_catalog). To refresh them after changing a string:

    printf '[python: **.py]\n[jinja2: **.html]\ntrimmed = true\nnewstyle_gettext = true\n' > /tmp/cw.cfg
    .venv/bin/pybabel extract -F /tmp/cw.cfg -k N_ -k translate:2 --add-location=file -w 100 \
        -o /tmp/cw.pot dropbox/caseworker dropbox/templates/caseworker dropbox/notify.py
    .venv/bin/pybabel update -D caseworker -i /tmp/cw.pot -d dropbox/locale -w 100 --ignore-obsolete

then translate the new or fuzzy entries in da and sv (tests/test_i18n.py fails until they are).
All .po files share one namespace: a msgid also used on the whistleblower side must keep the
same translation in both files.
"""
