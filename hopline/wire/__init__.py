"""The contract every hopline component shares: a leaf that imports nothing from the project.

Modules (import the one you need; this package imports none of them eagerly, so a
client that only needs the envelope never loads aio-pika):

* :mod:`hopline.wire.errors`: error codes and :class:`~hopline.wire.errors.Failure`.
* :mod:`hopline.wire.envelope`: the client protocol on ``/ws`` (plain and ``hopline.v1``).
* :mod:`hopline.wire.batch`: many requests (and their replies) in one AMQP message.
* :mod:`hopline.wire.amqp`: queue names and arguments, headers, content types.
* :mod:`hopline.wire.connect`: opening AMQP connections, URL redaction (aio-pika).
* :mod:`hopline.wire.liveness`: blocked and silent AMQP connections (aio-pika).
* :mod:`hopline.wire.defaults`: default URLs, queue name, exit code of an interrupt.
"""
