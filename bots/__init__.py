"""The chat edge: neutral chat types, the command router, platform adapters, the CLI."""
