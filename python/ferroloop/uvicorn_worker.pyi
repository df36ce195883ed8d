__all__ = ('UvicornWorker',)

# uvicorn-worker's class, and gunicorn's below it, carry no types: the
# worker is declared as the class it is, without the members they lack.
UvicornWorker: type
