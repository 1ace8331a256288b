"""Ray casting for the data writers: 3D-R2N2-style shaded views and depth-sensor scans.

Backed by Embree through ``embreex`` (the package trimesh uses for fast ray queries): about 2 ms of
ray casting for a 137x137 view on one CPU core.

Camera convention (3D-R2N2 ``rendering_metadata.txt``): a view is (azimuth deg, elevation deg,
in-plane rotation deg, distance ratio, field of view deg). In ShapeNet coordinates (y up) the camera
sits at ``d * (cos(el) cos(az), sin(el), cos(el) sin(az))`` with ``d = ratio * MAX_CAMERA_DISTANCE``
and looks at the origin with y as its up direction (no in-plane roll); this is the extrinsic matrix
that Mesh R-CNN / PyTorch3D's R2N2 loader derive from the same five numbers.

:func:`render_views` writes one object's rendering folder (the views, ``renderings.txt``,
``rendering_metadata.txt``) for both ``datasets.synthetic`` and ``datasets.prepare_meshes``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

MAX_CAMERA_DISTANCE = 1.75  # 3D-R2N2: camera distance = distance ratio * 1.75 (objects: bbox diagonal 1)
# Blender's default camera (35 mm lens, 32 mm sensor), with which the 3D-R2N2 views were rendered.
BLENDER_FOV_DEG = math.degrees(2.0 * math.atan(16.0 / 35.0))
IMAGE_SIZE = 137  # 3D-R2N2's renderings are 137x137


def _require_embree():
    try:
        from embreex import rtcore_scene
        from embreex.mesh_construction import TriangleMesh
    except ImportError as exc:  # a clear message instead of a 1000x slower fallback
        raise ImportError(
            "datasets.making.render needs the 'embreex' package (Embree ray tracing, used through trimesh). "
            "Install it with `pip install embreex` (it is in requirements.txt)."
        ) from exc
    return rtcore_scene, TriangleMesh


class RayCaster:
    """First-hit ray queries against a triangle mesh.

    vertices: (V, 3) float; faces: (F, 3) int. ``first_hit(origins (N, 3), dirs (N, 3))`` returns
    (face (N,) int64, -1 where the ray misses; t (N,) float64 distance along the unit direction).
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray):
        rtcore_scene, TriangleMesh = _require_embree()
        self.scene = rtcore_scene.EmbreeScene()
        TriangleMesh(scene=self.scene, vertices=np.ascontiguousarray(vertices, dtype=np.float32),
                     indices=np.ascontiguousarray(faces, dtype=np.int32))

    def first_hit(self, origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(origins) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        dirs = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
        out = self.scene.run(np.ascontiguousarray(origins, dtype=np.float32),
                             np.ascontiguousarray(dirs, dtype=np.float32), output=1)
        face = np.where(out["geomID"] >= 0, out["primID"], -1).astype(np.int64)
        return face, out["tfar"].astype(np.float64)


def camera_basis(azimuth: float, elevation: float, distance: float) -> tuple[np.ndarray, np.ndarray]:
    """Camera centre (3,) and rotation (3, 3) whose rows are right, up, forward (world, y up)."""
    az, el = math.radians(azimuth), math.radians(elevation)
    center = distance * np.array([math.cos(el) * math.cos(az), math.sin(el), math.cos(el) * math.sin(az)])
    return center, look_at(center, np.zeros(3))


def look_at(center: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(3, 3) rows = right, up, forward for a camera at ``center`` looking at ``target`` (y up)."""
    fwd = np.asarray(target, dtype=np.float64) - center
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, np.array([0.0, 1.0, 0.0]))
    if np.linalg.norm(right) < 1e-8:
        right = np.array([1.0, 0.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, fwd)
    return np.stack([right, up, fwd])


def project(points: np.ndarray, center: np.ndarray, basis: np.ndarray, fov_deg: float,
            size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pinhole projection: (cols, rows) float pixel coordinates (N,) each, pixel centres at +0.5."""
    rel = (points - center) @ basis.T  # (N, 3): right, up, forward
    f = 0.5 * size / math.tan(math.radians(fov_deg) / 2)
    depth = np.maximum(rel[:, 2], 1e-6)
    return 0.5 * size + f * rel[:, 0] / depth, 0.5 * size - f * rel[:, 1] / depth


def pixel_rays(center: np.ndarray, basis: np.ndarray, fov_deg: float, size: int, rows: np.ndarray,
               cols: np.ndarray, offsets: np.ndarray | None = None) -> np.ndarray:
    """Unit ray directions (N, 3) through the given pixels (row 0 = top).

    offsets: (N, 2) positions inside each pixel in [0, 1) as (row, col); default the pixel centre.
    """
    tan = math.tan(math.radians(fov_deg) / 2)
    off_r, off_c = (0.5, 0.5) if offsets is None else (offsets[:, 0], offsets[:, 1])
    x = ((cols + off_c) / size * 2 - 1) * tan
    y = (1 - (rows + off_r) / size * 2) * tan
    d = x[:, None] * basis[0] + y[:, None] * basis[1] + basis[2]
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def render_view(caster: RayCaster, vertices: np.ndarray, normals: np.ndarray, face_albedo: np.ndarray,
                azimuth: float, elevation: float, distance: float, fov_deg: float,
                size: int = IMAGE_SIZE) -> np.ndarray:
    """Flat-shaded (Lambertian, two lights fixed to the camera) RGBA view, transparent background.

    vertices: (V, 3) the mesh's vertices (to bound the silhouette); normals: (F, 3) unit face normals;
    face_albedo: (F, 3) floats in [0, 1]. Returns (size, size, 4) uint8; alpha 255 on the object.
    """
    center, basis = camera_basis(azimuth, elevation, distance)
    cols, rows = project(vertices, center, basis, fov_deg, size)
    c0, c1 = max(int(np.floor(cols.min())) - 1, 0), min(int(np.ceil(cols.max())) + 1, size)
    r0, r1 = max(int(np.floor(rows.min())) - 1, 0), min(int(np.ceil(rows.max())) + 1, size)
    img = np.zeros((size, size, 4), dtype=np.uint8)
    if c0 >= c1 or r0 >= r1:
        return img
    rr, cc = np.meshgrid(np.arange(r0, r1), np.arange(c0, c1), indexing="ij")
    rr, cc = rr.ravel(), cc.ravel()
    dirs = pixel_rays(center, basis, fov_deg, size, rr, cc)
    face, _ = caster.first_hit(np.broadcast_to(center, dirs.shape), dirs)
    hit = face >= 0
    f = face[hit]
    n = normals[f]
    n = np.where((np.einsum("ij,ij->i", n, dirs[hit]) > 0)[:, None], -n, n)  # face the camera
    key = -0.45 * basis[0] + 0.65 * basis[1] - 0.6 * basis[2]
    fill = 0.7 * basis[0] + 0.1 * basis[1] - 0.7 * basis[2]
    key, fill = key / np.linalg.norm(key), fill / np.linalg.norm(fill)
    shade = 0.28 + 0.62 * np.clip(n @ key, 0, None) + 0.25 * np.clip(n @ fill, 0, None)
    rgb = np.clip(face_albedo[f] * shade[:, None], 0.0, 1.0)
    img[rr[hit], cc[hit], :3] = np.round(rgb * 255).astype(np.uint8)
    img[rr[hit], cc[hit], 3] = 255
    return img


def _fmt(x: float) -> str:
    return format(float(x), ".12g")


def render_views(caster: RayCaster, vertices: np.ndarray, normals: np.ndarray, face_albedo: np.ndarray,
                 rng: np.random.Generator, n_views: int, out_dir: Path, size: int = IMAGE_SIZE) -> None:
    """Renders ``n_views`` views of a mesh normalised to bounding-box diagonal 1 into ``out_dir``:
    ``00.png ..`` (size x size RGBA, transparent background, no PNG metadata), ``renderings.txt``
    (the file names) and ``rendering_metadata.txt`` (one ``az el 0 ratio fov`` line per view).

    Each view's camera follows 3D-R2N2, drawn from ``rng`` in this order per view: azimuth U(0, 360),
    elevation U(25, 30) degrees, distance ratio U(0.7, 0.9) (camera distance ratio *
    MAX_CAMERA_DISTANCE), no in-plane rotation. The numbers are rounded to 12 significant digits,
    rendered with exactly those values, and written as rendered.

    vertices: (V, 3); normals: (F, 3) unit face normals; face_albedo: (F, 3) floats in [0, 1].
    """
    names, meta = [], []
    for v in range(n_views):
        az, el, ratio = _fmt(rng.uniform(0, 360)), _fmt(rng.uniform(25, 30)), _fmt(rng.uniform(0.7, 0.9))
        # Differs from the original: 3D-R2N2's files always say 25 in the fifth column, but their views
        # were rendered with Blender's default camera (horizontal FOV 49.13 deg, the intrinsics Mesh R-CNN
        # and PyTorch3D use with those files); we write the field of view the image was rendered with.
        fov = _fmt(BLENDER_FOV_DEG)
        img = render_view(caster, vertices, normals, face_albedo, float(az), float(el),
                          float(ratio) * MAX_CAMERA_DISTANCE, float(fov), size)  # (size, size, 4)
        name = f"{v:02d}.png"
        Image.fromarray(img, "RGBA").save(out_dir / name, format="PNG", compress_level=3)
        names.append(name)
        meta.append(f"{az} {el} 0 {ratio} {fov}")
    (out_dir / "renderings.txt").write_text("\n".join(names) + "\n")
    (out_dir / "rendering_metadata.txt").write_text("\n".join(meta) + "\n")


def exterior_mask(caster: RayCaster, points: np.ndarray, normals: np.ndarray,
                  rng: np.random.Generator, n_dirs: int = 8) -> np.ndarray:
    """(N,) bool: True where a surface point can see outside along at least one of ``n_dirs`` rays.

    Drops samples that lie inside other primitives of an assembly (e.g. the top of a chair leg inside
    the seat), which a scanner or a visible-surface sampler would never produce.
    points, normals: (N, 3). Directions are random per call, flipped into each point's hemisphere.
    """
    d = rng.normal(size=(n_dirs, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    dirs = np.broadcast_to(d[None], (len(points), n_dirs, 3))
    flip = np.einsum("nkc,nc->nk", dirs, normals) < 0
    dirs = np.where(flip[..., None], -dirs, dirs)
    origins = np.broadcast_to((points + 1e-4 * normals)[:, None], dirs.shape)
    face, _ = caster.first_hit(origins.reshape(-1, 3), dirs.reshape(-1, 3))  # (N * n_dirs, 3) each
    escaped = (face < 0).reshape(len(points), n_dirs)  # (N, n_dirs)
    return escaped.any(axis=1)


def scan(caster: RayCaster, sensor: np.ndarray, target: np.ndarray, fov_deg: float, resolution: int,
         rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Depth-sensor scan: one ray per pixel of a resolution x resolution grid.

    With ``rng`` each ray passes through a random point of its pixel (no scan-line aliasing).
    Returns hit points (M, 3), the hit face (M,) and the unit ray directions (M, 3); only surfaces
    visible from the sensor are returned, so self-occlusion and occlusion by clutter are exact.
    """
    basis = look_at(np.asarray(sensor, dtype=np.float64), np.asarray(target, dtype=np.float64))
    rr, cc = np.meshgrid(np.arange(resolution), np.arange(resolution), indexing="ij")
    offsets = None if rng is None else rng.random((rr.size, 2))
    dirs = pixel_rays(sensor, basis, fov_deg, resolution, rr.ravel(), cc.ravel(), offsets)
    face, t = caster.first_hit(np.broadcast_to(sensor, dirs.shape), dirs)
    hit = face >= 0
    return sensor + dirs[hit] * t[hit, None], face[hit], dirs[hit]
