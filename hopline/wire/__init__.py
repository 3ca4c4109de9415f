"""The contract every hopline component shares: a leaf that imports nothing from the project.

Modules (import the one you need; this package imports none of them eagerly, so a
client that only needs the envelope never loads aio-pika):

* :mod:`hopline.wire.errors`: error codes and :class:`~hopline.wire.errors.Failure`.
* :mod:`hopline.wire.envelope`: the client protocol on ``/ws`` (plain and ``hopline.v1``).
* :mod:`hopline.wire.batch`: many requests (and their replies) in one AMQP message.
* :mod:`hopline.wire.amqp`: queue names and arguments, headers, content types.
* :mod:`hopline.wire.addresses`: parsing and checking broker address lists (no aio-pika).
* :mod:`hopline.wire.connect`: a connection kept open over an address list
  (:class:`~hopline.wire.connect.Link`), URL redaction (aio-pika).
* :mod:`hopline.wire._aiormq_compat`: the one use of aiormq's private attributes.
* :mod:`hopline.wire.liveness`: blocked and silent AMQP connections (aio-pika).
* :mod:`hopline.wire.defaults`: default URLs, queue name, exit code of an interrupt.
"""
