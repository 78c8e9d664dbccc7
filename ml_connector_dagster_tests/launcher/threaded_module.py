"""A module that starts a thread when imported: what the fork server must refuse to fork from."""

from __future__ import annotations

import threading

stop = threading.Event()
worker = threading.Thread(target=stop.wait, args=(30,), name="started-at-import", daemon=True)
worker.start()
