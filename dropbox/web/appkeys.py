"""Every typed key that hangs shared objects on a `web.Application`, in one place.

aiohttp warns about plain string keys and mypy cannot check them; an `AppKey` carries the
value's type, so `request.config_dict[SESSIONS]` is typed at every use. Engineers adding a
shared object (the storage handle, the sealing keys) add its key here, next to the others,
so two modules can never pick the same name for different things.

Types that themselves need these keys (`Templates`) are imported for type checking only, so
this module stays importable from anywhere without cycles.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Literal

from aiohttp import web

if TYPE_CHECKING:
    from dropbox.config import Config
    from dropbox.services import Services

#: Which of the two apps this is; templates and cookies differ between them.
AppKind = Literal["whistleblower", "caseworker"]

#: The install's frozen settings.
CONFIG: Final[web.AppKey[Config]] = web.AppKey("config")
#: "whistleblower" or "caseworker".
APP_KIND: Final[web.AppKey[AppKind]] = web.AppKey("app_kind")
#: The store, KDF pool, blob folders and install values shared by both apps.
SERVICES: Final[web.AppKey[Services]] = web.AppKey("services")
#: The landing page rendered once per language: it depends on nothing else, and it is what a
#: flood of visitors hits, so it must stay cheap while Argon2id runs use the cores.
LANDING_PAGES: Final[web.AppKey[dict[str, bytes]]] = web.AppKey("landing_pages")
#: Today's (UTC) day for the caseworker list's deadlines: ids.today, or a test's fixed clock.
TODAY: Final[web.AppKey[Callable[[], dt.date]]] = web.AppKey("today")
