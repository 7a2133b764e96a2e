"""The multiprocessing front (``--processes N``): a parent and its child processes.

The parent (parent.py) journals and routes; each child (child.py) runs an
engine over the hosts it owns (partition.py); they talk over a socket pair
each (channel.py) in the wire format of wire.py; children.py watches them.
"""
