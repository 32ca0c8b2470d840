"""serve's gunicorn worker: gunicorn's sync worker, telling the app when it is about to wait for requests.

Imported only by gunicorn, by name (``serve`` sets ``worker_class`` to
:data:`pixel_middleware.server.serve.SYNC_WORKER`), since it needs gunicorn, an
optional dependency.
"""
from __future__ import annotations

import select
from typing import Any, Optional

from gunicorn.workers.sync import SyncWorker as _GunicornSyncWorker


class SyncWorker(_GunicornSyncWorker):
    """gunicorn's sync worker, calling the app's ``idle()``, if it has one, whenever no connection is waiting.

    That is the moment to write what was held while requests kept coming
    (``serve``'s app writes its file sinks' held lines): the worker has
    nothing else to do, and the next request has not arrived. An app
    without ``idle`` (any other WSGI app) runs exactly as on gunicorn's own
    sync worker.
    """

    def wait(self, timeout: float) -> Optional[Any]:
        idle = getattr(self.wsgi, "idle", None)
        # With one socket gunicorn only waits once accept() found no one; with several
        # (the ops port) it waits on every turn, so look first whether anyone is there.
        if idle is not None and (len(self.sockets) == 1 or not select.select(self.sockets, [], [], 0)[0]):
            idle()
        return super().wait(timeout)
