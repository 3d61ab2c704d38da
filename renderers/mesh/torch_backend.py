"""Pure PyTorch mesh rasteriser with nvdiffrast's output semantics (CPU or any torch device).

Visibility is found without autograd in one vectorised pass: every triangle is projected to
pixels, (triangle, pixel) candidate pairs inside its pixel bounding box are enumerated in
memory-bounded chunks, tested with edge functions at pixel centres, and resolved with one
``scatter_reduce(amin)`` over an int64 key (quantised z/w in the high bits, triangle id in the
low bits). The barycentrics of the winning triangle are then recomputed in autograd from its
clip-space vertices with the perspective-correct formula nvdiffrast's backward pass uses, so
gradients reach ``pos`` (minus silhouette terms, which need antialiasing to exist at all).

Conventions (identical to nvdiffrast):
    * pixel (row y, col x) has its centre at clip-space ``((2x+1)/W - 1, (2y+1)/H - 1)``, so row
      0 is clip y = -1, the bottom of the image;
    * ``rast[..., 0:2] = (u, v)`` where u weights vertex 0 of the triangle, v weights vertex 1 and
      ``1 - u - v`` weights vertex 2 (that is what nvdiffrast's interpolate kernel does);
    * ``rast[..., 2]`` is z/w (NDC depth, no gradient), ``rast[..., 3]`` the triangle id + 1, 0
      where empty;
    * both windings are drawn; the nearer z/w wins and exact ties go to the lower triangle id.

Differences from nvdiffrast, all documented: triangles with any vertex at w <= 0 are dropped
instead of clipped (fragments outside -1 <= z/w <= 1 are dropped, which is the near/far clip);
pixel centres exactly on an edge count as inside for both triangles that share it (the depth
test then picks one, so meshes are watertight but coverage of exact-edge silhouettes can differ
from nvdiffrast's fill rule by a pixel).
"""

from __future__ import annotations

import torch
from torch import Tensor

# Candidate (triangle, pixel) pairs tested at once; bounds memory at roughly 100 bytes each.
MAX_PAIRS = 1 << 20
_DEPTH_BITS = 30
_EMPTY = torch.iinfo(torch.int64).max
_BAND = 32  # pixel boxes are cut into bands of this many rows


def _size_classes(limit: int) -> list[int]:
    """Box sizes 1, 2, 3, 4, 6, 8, 12, 16, ... (steps of about sqrt 2) up to at least ``limit``."""
    out, s = [1], 1.0
    while out[-1] < limit:
        s *= 2**0.5
        k = int(-(-s // 1))
        if k > out[-1]:
            out.append(k)
    return out


def _as_batched(pos: Tensor) -> Tensor:
    if pos.dim() == 2:
        pos = pos.unsqueeze(0)
    if pos.dim() != 3 or pos.shape[-1] != 4:
        raise ValueError(f"pos must be [C, V, 4] or [V, 4], got {tuple(pos.shape)}")
    return pos


def _edge_coefficients(sx: Tensor, sy: Tensor) -> Tensor:
    """[T, 3, 3] (A, B, C) with e(p) = A x + B y + C for the edge opposite each vertex.

    Each edge's endpoints are put in a canonical (lexicographic) order before the coefficients are
    computed, so two triangles sharing an edge evaluate bit-identical values of opposite sign: no
    pixel centre can fall through the crack between them.
    """
    ia = torch.tensor([1, 2, 0], device=sx.device)
    ib = torch.tensor([2, 0, 1], device=sx.device)
    ax, ay, bx, by = sx[:, ia], sy[:, ia], sx[:, ib], sy[:, ib]
    swap = (ax > bx) | ((ax == bx) & (ay > by))
    ax, bx = torch.where(swap, bx, ax), torch.where(swap, ax, bx)
    ay, by = torch.where(swap, by, ay), torch.where(swap, ay, by)
    dx, dy = bx - ax, by - ay
    coef = torch.stack([-dy, dx, dy * ax - dx * ay], -1)
    sign = torch.where(swap, -1.0, 1.0).to(sx.dtype)
    return coef * sign.unsqueeze(-1)


@torch.no_grad()
def visible_triangles(pos: Tensor, tri: Tensor, resolution: tuple[int, int], expand: float = 0.0) -> Tensor:
    """[C, H, W] int64 index of the nearest triangle at each pixel centre (-1 where empty).

    ``expand`` > 0 (in pixels) makes the coverage test conservative: a pixel counts as touched
    when its centre lies within ``expand`` of the triangle's edges (used to fill texels crossed by
    thin UV triangles). The nearest-z/w-then-lowest-id rule is the same either way.
    """
    pos = _as_batched(pos)
    C, _, _ = pos.shape
    H, W = int(resolution[0]), int(resolution[1])
    F = tri.shape[0]
    dev, dt = pos.device, pos.dtype
    buf = torch.full((C * H * W,), _EMPTY, dtype=torch.int64, device=dev)
    if F == 0:
        return torch.full((C, H, W), -1, dtype=torch.int64, device=dev)

    v = pos[:, tri.long()]  # [C, F, 3, 4]
    w = v[..., 3]
    ok = (w > 0).all(-1)
    w = torch.where(w > 0, w, torch.ones_like(w))
    # Pixel coordinates with pixel centres on integers; clamp keeps far-away vertices finite.
    big = float(4 * max(H, W) + 16)
    sx = ((v[..., 0] / w + 1.0) * (0.5 * W) - 0.5).clamp(-big, big)
    sy = ((v[..., 1] / w + 1.0) * (0.5 * H) - 0.5).clamp(-big, big)
    zw = v[..., 2] / w
    ok &= torch.isfinite(v).all(-1).all(-1)
    ok &= ~((zw < -1).all(-1) | (zw > 1).all(-1))

    x0 = torch.ceil(sx.amin(-1) - expand).clamp(0, W - 1)
    x1 = torch.floor(sx.amax(-1) + expand).clamp(-1, W - 1)
    y0 = torch.ceil(sy.amin(-1) - expand).clamp(0, H - 1)
    y1 = torch.floor(sy.amax(-1) + expand).clamp(-1, H - 1)
    ok &= (x1 >= x0) & (y1 >= y0)
    ok &= (sx.amax(-1) + expand >= 0) & (sx.amin(-1) - expand <= W - 1)
    ok &= (sy.amax(-1) + expand >= 0) & (sy.amin(-1) - expand <= H - 1)

    cam, fid = ok.nonzero(as_tuple=True)
    if cam.numel() == 0:
        return torch.full((C, H, W), -1, dtype=torch.int64, device=dev)
    sx, sy, zw = sx[cam, fid], sy[cam, fid], zw[cam, fid]  # [T, 3]
    coef = _edge_coefficients(sx, sy)  # [T, 3, 3]
    area = (coef[..., 0] * sx.mean(-1, keepdim=True) + coef[..., 1] * sy.mean(-1, keepdim=True) + coef[..., 2]).sum(
        -1
    )  # 2 * signed area (sum of the three edge functions)
    orient = torch.where(area >= 0, 1.0, -1.0).to(dt)
    coef = coef * orient[:, None, None]
    area = area.abs()
    keep = area > 0
    # Depth plane z/w = lam . zw with lam_i = e_i / area, folded into one linear function.
    safe_area = torch.where(keep, area, torch.ones_like(area))
    zplane = (coef * zw.unsqueeze(-1)).sum(1) / safe_area.unsqueeze(-1)  # [T, 3]
    thresh = -expand * torch.linalg.vector_norm(coef[..., :2], dim=-1)  # [T, 3]

    x0l, y0l = x0[cam, fid].long(), y0[cam, fid].long()
    bw = x1[cam, fid].long() - x0l + 1
    bh = y1[cam, fid].long() - y0l + 1
    table = torch.cat([coef.reshape(-1, 9), zplane, thresh], 1)  # [T, 15]
    base = cam * (H * W)
    # Work items: each kept triangle's pixel box, cut into bands of at most _BAND rows.
    t_all = keep.nonzero(as_tuple=True)[0]
    nb = torch.div(bh[t_all] + _BAND - 1, _BAND, rounding_mode="floor")
    item_t = t_all.repeat_interleave(nb)
    band = torch.arange(item_t.numel(), device=dev) - (torch.cumsum(nb, 0) - nb).repeat_interleave(nb)
    item_y0 = y0l[item_t] + band * _BAND
    item_bh = (bh[item_t] - band * _BAND).clamp_max(_BAND)
    item_bw = bw[item_t]
    # Items are grouped by box size class (steps of sqrt 2) and enumerated as dense [n, kx * ky]
    # grids: per-pixel work is then broadcast arithmetic, with no per-pixel gathers.
    sizes = _size_classes(max(W, _BAND))
    ns = len(sizes)
    sizes_t = torch.tensor(sizes, device=dev)
    cls = torch.bucketize(item_bw, sizes_t) * ns + torch.bucketize(item_bh, sizes_t)
    order = torch.argsort(cls)
    uniq, counts = torch.unique_consecutive(cls[order], return_counts=True)
    first = 0
    for c, n in zip(uniq.tolist(), counts.tolist()):
        items = order[first : first + n]
        first += n
        kx, ky = sizes[c // ns], sizes[c % ns]
        ox = torch.arange(kx, device=dev).repeat(ky)
        oy = torch.arange(ky, device=dev).repeat_interleave(kx)
        per = max(1, MAX_PAIRS // (kx * ky))
        for s in range(0, n, per):
            it = items[s : s + per]
            t = item_t.index_select(0, it)
            row = table.index_select(0, t)
            px = x0l.index_select(0, t)[:, None] + ox
            py = item_y0.index_select(0, it)[:, None] + oy
            inside = (ox < item_bw.index_select(0, it)[:, None]) & (oy < item_bh.index_select(0, it)[:, None])
            fx, fy = px.to(dt), py.to(dt)
            for i in range(3):
                e = row[:, 3 * i, None] * fx + row[:, 3 * i + 1, None] * fy + row[:, 3 * i + 2, None]
                inside &= e >= row[:, 12 + i, None]
            z = row[:, 9, None] * fx + row[:, 10, None] * fy + row[:, 11, None]
            inside &= (z >= -1) & (z <= 1)
            z = z.masked_select(inside)
            if z.numel() == 0:
                continue
            pix = (base.index_select(0, t)[:, None] + py * W + px).masked_select(inside)
            q = ((z.clamp(-1, 1) + 1) * (0.5 * (1 << _DEPTH_BITS))).to(torch.int64)
            key = (q << 32) | fid.index_select(0, t)[:, None].expand_as(inside).masked_select(inside)
            buf.scatter_reduce_(0, pix, key, reduce="amin")
    out = torch.where(buf == _EMPTY, torch.full_like(buf, -1), buf & 0xFFFFFFFF)
    return out.view(C, H, W)


def barycentrics_at(
    pos: Tensor, tri: Tensor, cam: Tensor, fid: Tensor, px: Tensor, py: Tensor, resolution: tuple[int, int]
) -> tuple[Tensor, Tensor, Tensor]:
    """Perspective-correct (u, v) and z/w of triangles ``fid`` seen at pixel centres, in autograd.

    Uses 2D homogeneous edge functions in clip space: with p_i' = p_i.xy - f * p_i.w for the pixel
    centre f, the barycentrics are proportional to the cross products of the other two p'.
    """
    H, W = resolution
    p = pos[cam.unsqueeze(-1), tri[fid].long()]  # [N, 3, 4]
    fx = ((2 * px + 1).to(pos.dtype) / W - 1).unsqueeze(-1)
    fy = ((2 * py + 1).to(pos.dtype) / H - 1).unsqueeze(-1)
    qx = p[..., 0] - fx * p[..., 3]
    qy = p[..., 1] - fy * p[..., 3]
    a0 = qx[:, 1] * qy[:, 2] - qy[:, 1] * qx[:, 2]
    a1 = qx[:, 2] * qy[:, 0] - qy[:, 2] * qx[:, 0]
    a2 = qx[:, 0] * qy[:, 1] - qy[:, 0] * qx[:, 1]
    at = a0 + a1 + a2
    at = torch.where(at == 0, torch.full_like(at, 1e-30), at)
    u, v = a0 / at, a1 / at
    b = torch.stack([u, v, 1 - u - v], -1).detach()
    zw = (b * p[..., 2].detach()).sum(-1) / (b * p[..., 3].detach()).sum(-1)
    return u, v, zw


def rasterize_from_ids(pos: Tensor, tri: Tensor, tid: Tensor) -> Tensor:
    """nvdiffrast-style rast [C, H, W, 4] for given per-pixel triangle ids (autograd wrt pos)."""
    pos = _as_batched(pos)
    C, H, W = tid.shape
    cam, py, px = (tid >= 0).nonzero(as_tuple=True)
    fid = tid[cam, py, px]
    u, v, zw = barycentrics_at(pos, tri, cam, fid, px, py, (H, W))
    vals = torch.stack([u, v, zw, (fid + 1).to(pos.dtype)], -1)
    out = pos.new_zeros(C * H * W, 4)
    out = out.index_put((cam * (H * W) + py * W + px,), vals)
    return out.view(C, H, W, 4)


def rasterize(pos: Tensor, tri: Tensor, resolution: tuple[int, int]) -> Tensor:
    """nvdiffrast-compatible rast [C, H, W, 4] = (u, v, z/w, triangle_id + 1); see module doc."""
    pos = _as_batched(pos)
    tid = visible_triangles(pos.detach(), tri, resolution)
    return rasterize_from_ids(pos, tri, tid)


def interpolate(attr: Tensor, rast: Tensor, tri: Tensor) -> Tensor:
    """[C, H, W, A] per-vertex attributes blended by rast's barycentrics (0 where empty)."""
    C, H, W, _ = rast.shape
    if attr.dim() == 2:
        attr = attr.unsqueeze(0)
    tid = rast[..., 3].detach().round().long() - 1
    cam, py, px = (tid >= 0).nonzero(as_tuple=True)
    fid = tid[cam, py, px]
    r = rast[cam, py, px]
    ac = cam if attr.shape[0] > 1 else torch.zeros_like(cam)
    a = attr[ac.unsqueeze(-1), tri[fid].long()]  # [N, 3, A]
    u, v = r[:, 0:1], r[:, 1:2]
    vals = u * a[:, 0] + v * a[:, 1] + (1 - u - v) * a[:, 2]
    out = vals.new_zeros(C * H * W, attr.shape[-1])
    out = out.index_put((cam * (H * W) + py * W + px,), vals)
    return out.view(C, H, W, -1)


def texture(tex: Tensor, uv: Tensor, filter_mode: str = "linear", boundary_mode: str = "clamp") -> Tensor:
    """[C, H, W, Ch] lookup of ``tex`` [1 or C, Ht, Wt, Ch] at nvdiffrast-convention ``uv``.

    Texel (row i, col j) has its centre at uv ((j + 0.5) / Wt, (i + 0.5) / Ht): u runs along a
    memory row, v down the rows. Boundary: "clamp" (edge texels), "wrap" (repeat) or "zero".
    """
    if filter_mode not in ("linear", "nearest"):
        raise ValueError(f"torch backend supports filter_mode 'linear' or 'nearest', not {filter_mode!r}")
    if boundary_mode not in ("clamp", "wrap", "zero"):
        raise ValueError(f"boundary_mode must be clamp, wrap or zero, not {boundary_mode!r}")
    Bt, Ht, Wt, Ch = tex.shape
    C, H, W, _ = uv.shape
    flat = tex.reshape(Bt, Ht * Wt, Ch)
    bidx = torch.arange(C, device=uv.device) if Bt > 1 else torch.zeros(C, dtype=torch.long, device=uv.device)
    bidx = bidx.view(C, 1, 1).expand(C, H, W)

    def fetch(ix: Tensor, iy: Tensor) -> Tensor:
        if boundary_mode == "wrap":
            ix, iy = ix.remainder(Wt), iy.remainder(Ht)
            valid = None
        else:
            valid = (ix >= 0) & (ix < Wt) & (iy >= 0) & (iy < Ht)
            ix, iy = ix.clamp(0, Wt - 1), iy.clamp(0, Ht - 1)
        val = flat[bidx, iy * Wt + ix]
        if boundary_mode == "zero":
            val = val * valid.unsqueeze(-1).to(val.dtype)
        return val

    x = uv[..., 0] * Wt
    y = uv[..., 1] * Ht
    if filter_mode == "nearest":
        return fetch(torch.floor(x).long(), torch.floor(y).long())
    x, y = x - 0.5, y - 0.5
    xf, yf = torch.floor(x), torch.floor(y)
    tx, ty = (x - xf).unsqueeze(-1), (y - yf).unsqueeze(-1)
    ix, iy = xf.long(), yf.long()
    top = fetch(ix, iy) * (1 - tx) + fetch(ix + 1, iy) * tx
    bot = fetch(ix, iy + 1) * (1 - tx) + fetch(ix + 1, iy + 1) * tx
    return top * (1 - ty) + bot * ty


def edge_neighbours(tri: Tensor) -> Tensor:
    """[F, 3] int64: the face across each face's edge i (the edge opposite vertex i), -1 if none.

    Edges shared by more than two faces count as open (-1): they are always silhouettes.
    """
    t = tri.long()
    F = t.shape[0]
    a = torch.stack([t[:, 1], t[:, 2], t[:, 0]], 1).reshape(-1)
    b = torch.stack([t[:, 2], t[:, 0], t[:, 1]], 1).reshape(-1)
    key = torch.minimum(a, b) * (int(t.max().item()) + 1 if F else 1) + torch.maximum(a, b)
    _, inverse, counts = torch.unique(key, return_inverse=True, return_counts=True)
    order = torch.argsort(inverse, stable=True)
    out = torch.full((3 * F,), -1, dtype=torch.long, device=tri.device)
    pair = counts[inverse[order]] == 2
    first = order[pair][0::2]
    second = order[pair][1::2]
    out[first] = second // 3
    out[second] = first // 3
    return out.view(F, 3)


def antialias(color: Tensor, rast: Tensor, pos: Tensor, tri: Tensor, neighbours: Tensor | None = None) -> Tensor:
    """Blend colours across silhouette edges by analytic coverage; gradients reach ``pos``.

    The same idea as nvdiffrast's ``antialias``: for each pair of horizontally or vertically
    adjacent pixels that see different surfaces, the nearer triangle's edge that the segment
    between the two pixel centres crosses is found; if it is a silhouette edge (open, or between
    a front- and a back-facing triangle in this view), the pixel the edge cuts into takes a share
    of the other's colour equal to the covered fraction of the segment. That share is a smooth
    function of the edge's projected vertices, which is what gives silhouettes their gradient.

    Args:
        color: [C, H, W, Ch] shaded colours (rast row order, row 0 = bottom).
        rast: [C, H, W, 4] from :func:`rasterize` with the same ``pos`` and ``tri``.
        pos: [C, V, 4] clip-space positions.
        neighbours: :func:`edge_neighbours` of ``tri``, computed when None.
    Returns:
        [C, H, W, Ch] antialiased colours.
    """
    pos = _as_batched(pos)
    C, H, W, _ = color.shape
    if neighbours is None:
        neighbours = edge_neighbours(tri)
    t = tri.long()
    w = pos[..., 3:4]
    safe_w = torch.where(w.abs() > 1e-12, w, torch.full_like(w, 1e-12))
    screen = torch.cat(
        [(pos[..., 0:1] / safe_w + 1) * (0.5 * W) - 0.5, (pos[..., 1:2] / safe_w + 1) * (0.5 * H) - 0.5], -1
    )  # [C, V, 2] pixel units, pixel centres on integers
    with torch.no_grad():
        s = screen[:, t]  # [C, F, 3, 2]
        d1, d2 = s[:, :, 1] - s[:, :, 0], s[:, :, 2] - s[:, :, 0]
        facing = (d1[..., 0] * d2[..., 1] - d1[..., 1] * d2[..., 0]) > 0  # [C, F]
        in_front = (pos[..., 3] > 0)[:, t].all(-1)  # [C, F]
    tid = rast[..., 3].detach().round().long() - 1
    depth = rast[..., 2].detach()
    delta = torch.zeros_like(color)
    for dy, dx in ((0, 1), (1, 0)):
        ta, tb = tid[:, : H - dy, : W - dx], tid[:, dy:, dx:]
        za, zb = depth[:, : H - dy, : W - dx], depth[:, dy:, dx:]
        a_front = (ta >= 0) & ((tb < 0) | (za < zb))
        b_front = (tb >= 0) & ~a_front
        cand = (ta != tb) & (a_front | b_front)
        cam, y, x = cand.nonzero(as_tuple=True)
        if cam.numel() == 0:
            continue
        a_is_front = a_front[cam, y, x]
        occ = torch.where(a_is_front, ta[cam, y, x], tb[cam, y, x])
        ok = in_front[cam, occ]
        cam, y, x, occ, a_is_front = cam[ok], y[ok], x[ok], occ[ok], a_is_front[ok]
        # pixel centres: o (seen by the occluder) and n (the neighbour it may cut into)
        ya, xa = y.to(color.dtype), x.to(color.dtype)
        oy = torch.where(a_is_front, ya, ya + dy)
        ox = torch.where(a_is_front, xa, xa + dx)
        ny = torch.where(a_is_front, ya + dy, ya)
        nx = torch.where(a_is_front, xa + dx, xa)
        v = screen[cam.unsqueeze(-1), t[occ]]  # [N, 3, 2], in autograd
        edge_o = _edge_values(v, ox, oy)  # [N, 3] E_i at o (>= 0 inside for facing triangles)
        edge_n = _edge_values(v, nx, ny)
        sign = torch.where(facing[cam, occ], 1.0, -1.0).to(color.dtype).unsqueeze(-1)
        eo, en = (edge_o * sign).detach(), (edge_n * sign).detach()
        leaving = (en < 0) & (eo > en)
        frac = torch.where(leaving, eo / torch.where(leaving, eo - en, torch.ones_like(eo)), torch.full_like(eo, 2.0))
        i = frac.argmin(-1)
        other = neighbours[occ, i]
        silhouette = leaving.gather(1, i[:, None]).squeeze(1)
        silhouette &= (other < 0) | (facing[cam, other.clamp_min(0)] != facing[cam, occ])
        if not bool(silhouette.any()):
            continue
        keep = silhouette.nonzero(as_tuple=True)[0]
        cam, oy, ox, ny, nx, i = cam[keep], oy[keep], ox[keep], ny[keep], nx[keep], i[keep]
        e_o = edge_o[keep].gather(1, i[:, None])
        e_n = edge_n[keep].gather(1, i[:, None])
        cross = (e_o / (e_o - e_n)).clamp(0.0, 1.0)  # where along o -> n the edge crosses
        oyl, oxl, nyl, nxl = oy.long(), ox.long(), ny.long(), nx.long()
        c_o, c_n = color[cam, oyl, oxl], color[cam, nyl, nxl]
        into_n = (cross - 0.5).clamp_min(0.0)  # the occluder covers part of n's pixel
        out_of_o = (0.5 - cross).clamp_min(0.0)  # the background shows in part of o's pixel
        flat = delta.view(-1, delta.shape[-1])
        flat = flat.index_add(0, (cam * H + nyl) * W + nxl, into_n * (c_o - c_n))
        flat = flat.index_add(0, (cam * H + oyl) * W + oxl, out_of_o * (c_n - c_o))
        delta = flat.view_as(delta)
    return color + delta


def _edge_values(v: Tensor, px: Tensor, py: Tensor) -> Tensor:
    """[N, 3] edge functions E_i(p) = cross(v_{i+1} - p, v_{i+2} - p) of triangles v [N, 3, 2]."""
    p = torch.stack([px, py], -1).unsqueeze(1)
    a = v.roll(-1, dims=1) - p
    b = v.roll(-2, dims=1) - p
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]
