"""RabbitMQ: messages, broker, `queue` (publish), `work` (consume, supervise), dead letters."""
