"""The console's reads and its session secret: what the web console shows beyond the
services the HTTP API shares with it."""
