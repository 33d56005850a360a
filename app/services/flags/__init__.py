"""Feature flags: the replica snapshot, the one lookup, the one write, the stage table."""
