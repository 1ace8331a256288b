"""What the data-making tools share: the synthetic generator (``datasets.synthetic``) and mesh
preparation (``datasets.prepare_meshes``) write the same on-disk formats from triangle meshes.

- ``common.py``: seeding by name, HDF5 split files, rotations, face normals and areas, surface
  sampling, the unit-sphere normalisation;
- ``render.py``: Embree ray casting, 3D-R2N2-style shaded views, simulated depth scans;
- ``meshes.py``: reading and validating mesh and point files (also used by ``embed.py``);
- ``parallel.py``: the worker pool with progress (also used by ``datasets.check --full``);
- ``contact_sheet.py``: one PNG of what any data root holds
  (``python -m datasets.making.contact_sheet --root ROOT --out sheet.png``).
"""
