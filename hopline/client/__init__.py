"""The hopline client: a sans-I/O core and a thin asyncio client on top of it.

Use it as ``from hopline import connect`` (see :mod:`hopline.client.aio` and
``docs/client.md``). Modules, lightest first (this package imports none of them):

* :mod:`hopline.client.errors`: the public exceptions.
* :mod:`hopline.client.handshake`: URL validation, auth headers, connection-failure
  classification (retryable or fatal, one wording).
* :mod:`hopline.client.pending`: the table of requests waiting for a reply.
* :mod:`hopline.client.core`: the sans-I/O protocol (encode, match, expire) over
  :mod:`hopline.wire.envelope`.
* :mod:`hopline.client.aio`: :func:`~hopline.client.aio.connect` and
  :class:`~hopline.client.aio.Client` (websockets' asyncio client underneath).
"""
