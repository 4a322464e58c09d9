"""The sidecar's actors: each owns its state and I/O, and talks to the others only by messages."""
