"""Simulated hamlet devices speaking the real field protocols over real transports."""
