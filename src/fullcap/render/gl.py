"""Headless OpenGL (EGL) mesh renderer.

Conventions (shared by the whole package):

* Camera frame: OpenCV. Metres; x right, y down, z away from the camera (visible points z > 0).
* Pixels: (u, v) with the origin at the top-left *corner* of the image, so the centre of
  pixel (column i, row j) is at (i + 0.5, j + 0.5). A camera point projects to
  ``u = fx * x / z + s * y / z + cx`` and ``v = fy * y / z + cy``; image row 0 is the top.
* Meshes: triangles wound counter-clockwise around their outward normal (right-hand rule).

One EGL context is created lazily per process and shared by every :class:`Renderer`. A GL
context is bound to the thread that created it: use renderers from that thread only.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["RenderOutput", "RenderUnavailable", "Renderer", "projection_matrix"]

_FIX_HINT = (
    "Install the render extra with `pip install 'fullcap[render]'` and the EGL/Mesa system "
    "libraries (Debian/Ubuntu: `sudo apt-get install libegl1 libgl1 libegl-mesa0 "
    "libgl1-mesa-dri`)."
)
_MAX_FACES = 1 << 24  # triangle ids travel as float32 (id + 1); exact below 2**24

_VERTEX_SHADER = """
#version 330
uniform mat4 u_proj;
in vec3 in_pos;
in vec3 in_normal;
in vec3 in_color;
out float v_z;
out vec3 v_normal;
out vec3 v_color;
void main() {
    v_z = in_pos.z;
    v_normal = in_normal;
    v_color = in_color;
    gl_Position = u_proj * vec4(in_pos, 1.0);
}
"""

# Kept branch-free: llvmpipe pays heavily for divergent branches and derivatives.
_FRAGMENT_SHADER = """
#version 330
uniform vec3 u_light;    // unit vector from the surface towards the light, camera frame
uniform float u_ambient;
in float v_z;
in vec3 v_normal;
in vec3 v_color;
layout(location = 0) out vec4 f_color;
layout(location = 1) out vec2 f_geom;  // (camera z in metres, triangle id + 1)
void main() {
    vec3 n = gl_FrontFacing ? v_normal : -v_normal;  // face the camera on back faces
    float ndl = dot(n, u_light) * inversesqrt(max(dot(n, n), 1e-24));
    float shade = u_ambient + (1.0 - u_ambient) * max(ndl, 0.0);
    f_color = vec4(min(v_color * shade, 1.0), 1.0);
    f_geom = vec2(v_z, float(gl_PrimitiveID + 1));
}
"""


class RenderUnavailable(RuntimeError):
    """Raised when moderngl or a headless EGL OpenGL context cannot be obtained."""


@dataclass(frozen=True)
class RenderOutput:
    """One rendered frame.

    Attributes:
        rgb: (H, W, 3) uint8 shaded colour composited over the background.
        depth: (H, W) float32 camera-frame z (metres) of the visible surface; ``inf`` if empty.
        triangle_id: (H, W) int32 index into ``faces`` of the visible triangle; -1 if empty.
    """

    rgb: np.ndarray
    depth: np.ndarray
    triangle_id: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool, True where a triangle is visible."""
        return self.triangle_id >= 0


# ---------------------------------------------------------------- shared context
_CTX: Any = None
_CTX_PID: int | None = None
_CTX_LOCK = threading.Lock()


def _create_context() -> Any:
    """Create a standalone EGL moderngl context (GL >= 3.3) or raise RenderUnavailable."""
    try:
        import moderngl
    except ImportError as exc:
        raise RenderUnavailable(f"moderngl is not installed ({exc}). {_FIX_HINT}") from exc
    try:
        ctx = moderngl.create_standalone_context(backend="egl", require=330)
    except Exception as exc:
        raise RenderUnavailable(
            f"could not create a headless EGL OpenGL 3.3 context ({exc}). {_FIX_HINT}"
        ) from exc
    logger.info("EGL context: %s (GL %d)", ctx.info.get("GL_RENDERER", "?"), ctx.version_code)
    return ctx


def _context() -> Any:
    """Return the process-wide GL context, creating it on first use (again after a fork)."""
    global _CTX, _CTX_PID
    with _CTX_LOCK:
        if _CTX is None or os.getpid() != _CTX_PID:
            _CTX = _create_context()
            _CTX_PID = os.getpid()
        return _CTX


# ---------------------------------------------------------------- input checks
def _as_array(x: Any, dtype: Any, name: str) -> np.ndarray:
    """Convert a numpy array / torch tensor / sequence to a C-contiguous numpy array."""
    if hasattr(x, "detach"):  # torch.Tensor without importing torch
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except Exception as exc:
        raise ValueError(f"{name} must be array-like, got {type(x).__name__}") from exc
    return np.ascontiguousarray(arr, dtype=dtype)


def _check_shape(arr: np.ndarray, shape: tuple[int | None, ...], name: str, desc: str) -> None:
    ok = arr.ndim == len(shape) and all(
        s is None or s == a for s, a in zip(shape, arr.shape, strict=True)
    )
    if not ok:
        raise ValueError(f"{name} must have shape {desc}, got {tuple(arr.shape)}")


def projection_matrix(
    K: np.ndarray, width: int, height: int, near: float, far: float
) -> np.ndarray:
    """OpenGL clip matrix (4, 4), row-major, from OpenCV intrinsics K (3, 3) in pixels.

    Maps camera point (x, y, z) to clip coordinates whose NDC are ``x_ndc = 2u/W - 1`` and
    ``y_ndc = 2v/H - 1`` (window y == v, so framebuffer row 0 read by glReadPixels is image
    row 0), and ``z_ndc`` in [-1, 1] for z in [near, far]; ``w_clip = z``.
    """
    fx, s, cx = K[0]
    fy, cy = K[1, 1], K[1, 2]
    return np.array(
        [
            [2 * fx / width, 2 * s / width, 2 * cx / width - 1, 0],
            [0, 2 * fy / height, 2 * cy / height - 1, 0],
            [0, 0, (far + near) / (far - near), -2 * far * near / (far - near)],
            [0, 0, 1, 0],
        ],
        dtype=np.float64,
    )


# ---------------------------------------------------------------- renderer
class Renderer:
    """Offscreen rasteriser producing colour, exact camera depth and triangle ids.

    Args:
        width, height: image size in pixels.
        near, far: clipping distances along camera z, metres. Geometry outside is not drawn.

    GL buffers and the framebuffer are allocated once and reused; vertex/face counts may
    change between calls (the index buffer is re-uploaded only when ``faces`` changes).
    Call :meth:`release` (or use as a context manager) to free GL resources early.
    """

    def __init__(self, width: int, height: int, *, near: float = 0.05, far: float = 100.0):
        if int(width) <= 0 or int(height) <= 0:
            raise ValueError(f"width and height must be positive, got {width}x{height}")
        if not 0 < near < far:
            raise ValueError(f"need 0 < near < far, got near={near}, far={far}")
        self.width, self.height = int(width), int(height)
        self.near, self.far = float(near), float(far)
        ctx = _context()
        self._ctx = ctx
        try:
            self._prog = ctx.program(vertex_shader=_VERTEX_SHADER, fragment_shader=_FRAGMENT_SHADER)
            size = (self.width, self.height)
            self._rb_color = ctx.renderbuffer(size, components=4, dtype="f1")
            self._rb_geom = ctx.renderbuffer(size, components=2, dtype="f4")
            self._rb_depth = ctx.depth_renderbuffer(size)
            self._fbo = ctx.framebuffer(
                color_attachments=[self._rb_color, self._rb_geom], depth_attachment=self._rb_depth
            )
        except Exception as exc:
            raise RenderUnavailable(f"OpenGL setup failed ({exc}). {_FIX_HINT}") from exc
        self._vbo_pos = ctx.buffer(reserve=12)
        self._vbo_nrm = ctx.buffer(reserve=12)
        self._vbo_col = ctx.buffer(reserve=12)
        self._ibo = ctx.buffer(reserve=12)
        self._vao = ctx.vertex_array(
            self._prog,
            [
                (self._vbo_pos, "3f", "in_pos"),
                (self._vbo_nrm, "3f", "in_normal"),
                (self._vbo_col, "3f", "in_color"),
            ],
            index_buffer=self._ibo,
            index_element_size=4,
        )
        self._faces: np.ndarray | None = None  # last uploaded faces, int32 (F, 3)
        self._faces_flat: np.ndarray | None = None  # faces.ravel() as intp, for bincount
        self._corners: tuple[np.ndarray, ...] = ()  # faces[:, k] as contiguous intp, k = 0..2
        self._faces_max = -1
        self._grey: np.ndarray | None = None

    # -- resources
    def release(self) -> None:
        """Free the GL objects owned by this renderer (the shared context stays)."""
        for name in ("_vao", "_fbo", "_rb_color", "_rb_geom", "_rb_depth", "_vbo_pos",
                     "_vbo_nrm", "_vbo_col", "_ibo", "_prog"):  # fmt: skip
            obj = self.__dict__.pop(name, None)
            if obj is not None:
                obj.release()

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    @staticmethod
    def _upload(buf: Any, data: np.ndarray) -> None:
        """Write ``data`` into ``buf``, growing (orphaning) the buffer only when too small."""
        raw = data.tobytes()
        if len(raw) > buf.size:
            buf.orphan(max(len(raw), 2 * buf.size))
        buf.write(raw)

    def _set_faces(self, faces: np.ndarray) -> None:
        if (
            self._faces is not None
            and faces.shape == self._faces.shape
            and np.array_equal(faces, self._faces)
        ):
            return
        if len(faces) >= _MAX_FACES:
            raise ValueError(f"faces must have fewer than {_MAX_FACES} rows, got {len(faces)}")
        if faces.size and faces.min() < 0:
            raise ValueError("faces must contain non-negative vertex indices")
        self._faces = faces.copy()
        self._faces_flat = faces.ravel().astype(np.intp)
        self._corners = tuple(np.ascontiguousarray(faces[:, k], dtype=np.intp) for k in range(3))
        self._faces_max = int(faces.max()) if faces.size else -1
        self._upload(self._ibo, faces)

    def _vertex_normals(self, verts: np.ndarray) -> np.ndarray:
        """Area-weighted smooth vertex normals (V, 3) float32 (zero for unused vertices)."""
        f0, f1, f2 = self._corners
        x, y, z = np.ascontiguousarray(verts.T)
        ax, ay, az = x[f1] - x[f0], y[f1] - y[f0], z[f1] - z[f0]
        bx, by, bz = x[f2] - x[f0], y[f2] - y[f0], z[f2] - z[f0]
        face_n = (ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx)
        out = np.empty_like(verts)
        for c, comp in enumerate(face_n):
            out[:, c] = np.bincount(
                self._faces_flat, weights=np.repeat(comp, 3), minlength=len(verts)
            )
        norm = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norm, out=out, where=norm > 0)
        return out

    # -- main entry point
    def render(
        self,
        vertices: Any,
        faces: Any,
        K: Any,
        vertex_colors: Any = None,
        light_dir: Sequence[float] = (0.3, -0.5, -1.0),
        ambient: float = 0.35,
        background: Any = None,
        cull_back: bool = False,
    ) -> RenderOutput:
        """Rasterise a triangle mesh given in the camera frame.

        Args:
            vertices: (V, 3) float, camera-frame points in metres (OpenCV: z > 0 in front).
                numpy array or torch tensor.
            faces: (F, 3) int vertex indices, counter-clockwise around the outward normal.
            K: (3, 3) pinhole intrinsics in pixels; pixel centres at integer + 0.5.
            vertex_colors: (V, 3) RGB in [0, 1] (uint8 input is divided by 255);
                default light grey.
            light_dir: (3,) camera-frame direction from the surface *towards* the light
                (the default (0.3, -0.5, -1) is a key light above-right of the camera).
            ambient: ambient fraction in [0, 1]; shade = ambient + (1 - ambient) * max(n.l, 0).
                Normals are area-weighted smooth vertex normals, flipped on back faces (so
                either winding lights correctly); where they vanish, only ambient applies.
            background: optional (H, W, 3) uint8 image shown where no triangle is visible.
            cull_back: if True, discard triangles whose outward side faces away from the camera.

        Returns:
            :class:`RenderOutput` with rgb (H, W, 3) uint8, depth (H, W) float32 metres
            (inf if empty) and triangle_id (H, W) int32 (-1 if empty); row 0 is the image top.
        """
        if "_fbo" not in self.__dict__:
            raise RuntimeError("this Renderer has been released")
        H, W = self.height, self.width
        verts = _as_array(vertices, np.float32, "vertices")
        _check_shape(verts, (None, 3), "vertices", "(V, 3)")
        fcs = _as_array(faces, None, "faces")
        _check_shape(fcs, (None, 3), "faces", "(F, 3)")
        if fcs.dtype.kind not in "iu" and fcs.size:
            raise ValueError(f"faces must hold integer vertex indices, got dtype {fcs.dtype}")
        Km = _as_array(K, np.float64, "K")
        _check_shape(Km, (3, 3), "K", "(3, 3)")
        if not np.all(np.isfinite(Km)) or Km[0, 0] <= 0 or Km[1, 1] <= 0:
            raise ValueError(f"K must be finite with fx, fy > 0, got\n{Km}")
        light = _as_array(light_dir, np.float64, "light_dir")
        _check_shape(light, (3,), "light_dir", "(3,)")
        lnorm = float(np.linalg.norm(light))
        if not np.isfinite(lnorm) or lnorm == 0:
            raise ValueError(f"light_dir must be a finite non-zero vector, got {light}")
        if not 0.0 <= float(ambient) <= 1.0:
            raise ValueError(f"ambient must be in [0, 1], got {ambient}")
        n_v = len(verts)
        if vertex_colors is None:
            if self._grey is None or len(self._grey) != n_v:
                self._grey = np.full((n_v, 3), 0.8, dtype=np.float32)
            colors = self._grey
        else:
            colors = _as_array(vertex_colors, None, "vertex_colors")
            _check_shape(colors, (n_v, 3), "vertex_colors", f"(V, 3) = ({n_v}, 3)")
            scale = 255.0 if colors.dtype == np.uint8 else 1.0
            colors = np.ascontiguousarray(colors, dtype=np.float32) / np.float32(scale)
        bg = None
        if background is not None:
            bg = _as_array(background, None, "background")
            _check_shape(bg, (H, W, 3), "background", f"(H, W, 3) = ({H}, {W}, 3)")
            if bg.dtype != np.uint8:
                raise ValueError(f"background must be uint8, got {bg.dtype}")

        self._set_faces(fcs.astype(np.int32, copy=False))
        if self._faces_max >= n_v:
            raise ValueError(f"faces index vertex {self._faces_max} but vertices has {n_v} rows")

        ctx = self._ctx
        self._fbo.use()
        self._fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        if len(fcs) and n_v:
            self._upload(self._vbo_pos, verts)
            self._upload(self._vbo_nrm, self._vertex_normals(verts))
            self._upload(self._vbo_col, colors)
            proj = projection_matrix(Km, W, H, self.near, self.far)
            self._prog["u_proj"].write(proj.T.astype(np.float32).tobytes())  # column-major
            self._prog["u_light"].value = tuple((light / lnorm).tolist())
            self._prog["u_ambient"].value = float(ambient)
            ctx.disable(ctx.BLEND)
            ctx.enable(ctx.DEPTH_TEST)
            ctx.depth_func = "<"
            # NDC y grows with image v (downwards), which mirrors screen winding: a triangle
            # counter-clockwise around a camera-facing normal appears clockwise in GL window space.
            ctx.front_face = "cw"
            if cull_back:
                ctx.cull_face = "back"
                ctx.enable(ctx.CULL_FACE)
            else:
                ctx.disable(ctx.CULL_FACE)
            self._vao.render(vertices=3 * len(fcs))

        rgb = np.empty((H, W, 3), dtype=np.uint8)
        geom = np.empty((H, W, 2), dtype=np.float32)
        self._fbo.read_into(rgb, components=3, attachment=0, alignment=1, dtype="f1")
        self._fbo.read_into(geom, components=2, attachment=1, alignment=1, dtype="f4")
        tri = geom[..., 1].astype(np.int32) - 1
        hit = tri >= 0
        depth = np.where(hit, geom[..., 0], np.float32(np.inf)).astype(np.float32)
        if bg is not None:
            rgb = np.where(hit[..., None], rgb, bg)
        return RenderOutput(rgb=rgb, depth=depth, triangle_id=tri)
