"""Artifacts: versioned files and directories, content-addressed (issue #15).

``chunking`` cuts large files into content-defined chunks; ``packs`` stores those chunks in packs
and rebuilds files from them.
"""
