"""hopline gateway: WebSocket and HTTP front door that turns frames into RabbitMQ requests."""
