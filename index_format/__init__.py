"""The on-disk index format shared by `index_builder` (writer) and `api` (reader).

A published index is a directory ``ROOT/<version>/`` holding the files named in `layout`, and
``ROOT/current`` is a symlink to the version being served.
"""
