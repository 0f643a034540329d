"""Settings export, import and reset: Figranium's ZIP archive, secrets sealed with a passphrase.

``archive`` reads and writes the ZIP and ``sealing`` seals secrets with a key derived from a
passphrase; neither needs the gateway (no aiohttp, no database), so a command-line client
can read and write the same archives. ``secrets``, ``plan`` and ``service`` connect them to
the gateway's stored state.
"""
