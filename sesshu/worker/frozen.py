"""Imported by the fork server alone, as its last preload: what it imported stays shared.

Every slot is forked from the fork server, so the modules preloaded there
are shared with every slot, page for page, until something writes to a
page. A garbage collection in a slot would: it walks every object it tracks
and writes to each one's header. ``gc.freeze()`` moves everything the fork
server holds now into the permanent generation, which no collection walks.
"""

from __future__ import annotations

import gc

gc.freeze()
