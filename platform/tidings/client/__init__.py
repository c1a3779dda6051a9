"""The async client SDK (encryption happens here, never on the server).

It imports only ``tidings.core`` and ``tidings.errors``; its modules arrive with the
client SDK issue.
"""
