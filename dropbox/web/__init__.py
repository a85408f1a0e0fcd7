"""Web plumbing shared by both apps: app factories, middleware and headers, languages and
rendering, memory-only sessions, the failure budget and `serve`.

The domain (`dropbox/*.py`) never imports from here; the two apps' views
(`dropbox/whistleblower/`, `dropbox/caseworker/`) build on it.
"""
