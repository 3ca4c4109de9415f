"""hopline processor: consumes requests from RabbitMQ, runs a handler, replies."""
