"""Protocol decoders: bytes of one TCP connection in, messages out.

No decoder opens a file or a socket, prints, or logs what it returns as
an anomaly.  Each takes the two directions of one connection through
``feed``/``gap``/``end`` and hands back finished messages and anomalies.
"""
