"""What the tests share. A test file imports from here, never from another test file.

Installs and servers
  installs.py         new_install(data_dir, accounts): `init` + `caseworker add`; PASSPHRASES, ALICE, STAFF
  live_server.py      started_server/start (one app, production run_kwargs), serve_apps/`live` (both apps)
  caseworker_site.py  the caseworker app on loopback: `site` fixture, Agent (a signed-in browser)
  whistleblower_site.py  the whistleblower app with small LIMITS: `site` fixture, log_in, submit_report
  base_app.py         the base app alone (middleware, headers, pages) for the web-foundation tests
  server_process.py   the real server as a process (kill -9, restart, its log); server_main.py runs it
  domain.py           reports, replies and channels made through the domain code

Reading and sending
  forms.py            page scrapers (CSRF token, hidden fields, receipt, element text, links) and forms
  headers.py          the one table of security headers every response carries
  http_client.py      a whistleblower's and a caseworker's moves over a real aiohttp ClientSession
  raw_http.py         requests no client library sends, over a plain socket
  routes.py           both apps' route tables

Checks and faults
  data_checks.py      "nothing lost, nothing half-written" on an install's files; byte searches
  full_disk.py        SQLITE_FULL in-process; an ext4 loop disk to fill or turn read-only
  clock.py            FakeClock, until

Browsers, tor, files
  chromium.py         Playwright's Chromium, JavaScript off; Camera (screenshots + untranslated text)
  gecko.py            Firefox ESR at Tor Browser's "Safest" over Marionette
  tor_network.py      a private Tor network on 127.0.0.1; tor_fixtures.py its session fixtures
  tor_client.py       fetching an onion through a client tor, client-auth keys
  metadata_files.py   real files with planted metadata, for the cleaning tests
"""
