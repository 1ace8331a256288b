"""The synthetic data generator: procedural stand-ins for the four datasets in their published formats.

- ``generator.py``: :func:`~datasets.synthetic.generator.generate` (presets, per-dataset writers, the
  atomic swap into the root, the ``SYNTHETIC.json`` marker) and the command line;
- ``shapes.py``: the procedural part-labelled object families;
- ``__main__.py``: ``python -m datasets.synthetic --root DIR --preset tiny|small|full --seed S``.

What it shares with mesh preparation (rendering, geometry, HDF5 writing, the worker pool) is in
``datasets/making/``; whether a root is synthetic is read by ``datasets.provenance``.
"""
