"""Tor for the drop box: onion keys, a tor to publish with, and the two onion services.

stem sets its own logger to TRACE when imported, so under an ordinary `logging.basicConfig`
every control command it sends shows up in the server log at DEBUG. Routine tor chatter
does not belong there; we raise stem's threshold to WARNING (lower it again to debug).
"""

import logging

import stem.util.log  # sets the level on import; ours must come after

stem.util.log.get_logger().setLevel(logging.WARNING)
