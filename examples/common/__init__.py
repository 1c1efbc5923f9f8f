"""What the reference application's three services share: configuration from the
environment, JWTs, request ids and logging, and the insightdb lifespan they start with."""
