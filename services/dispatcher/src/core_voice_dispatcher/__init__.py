"""LiveKit webhooks in, durable job events and agent dispatches out."""
