"""Development-only tools: never imported by the service in production, never copied into the image."""
