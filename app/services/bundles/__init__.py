"""V2 bundle writes (dual write, idempotency, write-through hooks) and reads (V2 or legacy, shadow comparisons)."""
