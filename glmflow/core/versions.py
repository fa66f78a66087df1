"""File versions: what identifies a file's content without reading it."""

from __future__ import annotations

import os


def file_version(path):
    """The real path, size, modification and change times, inode and device of ``path``.

    The change time cannot be set back (unlike the modification time): any write moves
    it, so a file rewritten in place with its old time stamp is a new version. Used as
    the key of what a process remembers about a file (its digest, a read started ahead,
    a model it wrote).
    """
    st = os.stat(path)
    return (os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino,
            st.st_dev)
