"""gunicorn serving an ASGI app through uvicorn, on ferroloop::

    gunicorn app:app -k ferroloop.uvicorn_worker.UvicornWorker

The ``uvicorn-worker`` package's worker with uvicorn's loop set to ferroloop's.
"""

from uvicorn_worker import UvicornWorker as _UvicornWorker

__all__ = ('UvicornWorker',)


class UvicornWorker(_UvicornWorker):
    """uvicorn's gunicorn worker, on a ferroloop loop."""

    CONFIG_KWARGS = {**_UvicornWorker.CONFIG_KWARGS, 'loop': 'ferroloop:new_event_loop'}
