"""Built-in scenario files (TOML), shipped as package data."""
