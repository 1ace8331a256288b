"""Mesh preparation: your own meshes -> a data root in the published layouts.

- ``prepare.py``: :func:`~datasets.prepare_meshes.prepare.prepare` (scan the input, sample, render,
  split, write the classification set, resume and report) and the command line;
- ``__main__.py``: ``python -m datasets.prepare_meshes --input DIR --output ROOT``.

Reading and validating mesh and point files, rendering, geometry, HDF5 writing and the worker pool
are shared with the synthetic generator and ``embed.py``; they live in ``datasets/making/``.
"""
