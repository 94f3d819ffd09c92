"""The hamlet gateway: field inputs -> normalize -> durable buffer -> uplink.

Runs on a Raspberry Pi (Python 3.11). Never imports the server's dependencies.
"""
