"""Pure crypto core of the client SDK: keys, 1:1 sessions, group sender keys, media.

No network, storage or event loop of its own: every state object serializes to bytes so
a store can persist it. ``identity`` (keys and bundles), ``session`` (X3DH + Double
Ratchet over the ``x3dh``/``doubleratchet`` packages), ``sender_keys`` (groups),
``media`` (attachments), ``errors`` (what can go wrong).
"""
