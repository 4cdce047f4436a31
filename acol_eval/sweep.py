"""Every threshold of a map in one pass: union-find over pixels taken in level order.

A map becomes an integer level image: a pixel is in at threshold index i when its
level is > i. Going from the highest threshold down, pixels only join, so the
connected components of every threshold come from one pass that merges them
(a max-tree), instead of one labelling per threshold. At each level the current
components' boxes are scored against the ground-truth boxes right away, so
nothing per level is kept but a few numbers.

The wsoleval protocol also scores the boxes of OpenCV's hole contours: holes are
the 4-connected background components that do not reach the image edge, found by
the same kind of pass going up (background only grows). A hole contour runs
through the foreground pixels around the hole, so its box is the hole's box grown
by one pixel.

Compiled with numba when it is installed (about 1 ms per 224x224 map); without it
the same code runs as plain Python, correct but slow.
"""

from __future__ import annotations

import numpy as np

try:
    from numba import njit
except ImportError:  # pragma: no cover - exercised only where numba is missing
    def njit(*args, **kwargs):
        if args and callable(args[0]):
            return args[0]
        return lambda function: function

HAS_NUMBA = njit.__module__.startswith("numba")


@njit(cache=True, nogil=True)
def _best_iou(x0, y0, x1, y1, gt, inclusive):
    """Largest IoU of one box against the rows of gt; inclusive = wsoleval pixel counting."""
    best = 0.0
    extra = 1 if inclusive else 0
    area = (x1 - x0 + extra) * (y1 - y0 + extra)
    for g in range(gt.shape[0]):
        gx0, gy0, gx1, gy1 = gt[g, 0], gt[g, 1], gt[g, 2], gt[g, 3]
        inter_w = max(0, min(x1, gx1) - max(x0, gx0) + extra)
        inter_h = max(0, min(y1, gy1) - max(y0, gy0) + extra)
        inter = inter_w * inter_h
        union = area + (gx1 - gx0 + extra) * (gy1 - gy0 + extra) - inter
        iou = inter / union if union > 0 else 0.0
        if iou > best:
            best = iou
    return best


@njit(cache=True, nogil=True)
def _buckets(flat, n_buckets):
    """Counting sort of pixel indices by level: (order, start of each level)."""
    counts = np.zeros(n_buckets + 1, np.int64)
    for p in range(flat.size):
        counts[flat[p] + 1] += 1
    starts = np.cumsum(counts)
    order = np.empty(flat.size, np.int64)
    fill = starts[:-1].copy()
    for p in range(flat.size):
        level = flat[p]
        order[fill[level]] = p
        fill[level] += 1
    return order, starts


@njit(cache=True, nogil=True)
def sweep_components(levels, n_levels, gt, wsoleval):
    """Per threshold index i in [0, n_levels): the 8-connected components of `levels > i`.

    levels: int (H, W), values in [0, n_levels]. gt: int64 (g, 4) boxes.
    wsoleval: boxes x1 = min(xmax + 1, W - 1) with inclusive IoU; else x1 = xmax + 1
    (exclusive) with area IoU.
    Returns, per threshold index:
    - best IoU over all components (-1 where there is none);
    - IoU of the largest component by pixel count (ties to the first pixel in raster
      order): the native protocol's single box;
    - IoU of the component whose OpenCV contour area is surely the largest, and whether
      that is sure (contour area lies between the count of pixels with all four
      neighbours in the component and the area of the box of pixel centres);
    - the component count.
    """
    height, width = levels.shape
    flat = levels.ravel()
    size = flat.size
    order, starts = _buckets(flat, n_levels + 1)
    parent = np.full(size, -1, np.int64)
    bx0 = np.empty(size, np.int32)
    by0 = np.empty(size, np.int32)
    bx1 = np.empty(size, np.int32)
    by1 = np.empty(size, np.int32)
    count = np.zeros(size, np.int32)
    first = np.empty(size, np.int32)
    neighbours_in = np.zeros(size, np.int8)
    interior = np.zeros(size, np.int32)
    roots = np.empty(size, np.int32)
    n_roots = 0
    best_all = np.full(n_levels, -1.0)
    best_largest = np.full(n_levels, -1.0)
    best_contour = np.full(n_levels, -1.0)
    contour_sure = np.zeros(n_levels, np.bool_)
    n_components = np.zeros(n_levels, np.int64)
    for i in range(n_levels - 1, -1, -1):
        for k in range(starts[i + 1], starts[i + 2]):
            p = order[k]
            y = p // width
            x = p - y * width
            parent[p] = p
            bx0[p] = x
            bx1[p] = x
            by0[p] = y
            by1[p] = y
            count[p] = 1
            first[p] = p
            roots[n_roots] = p
            n_roots += 1
            root = p
            # interior pixels (all four neighbours in) give a lower bound of contour area
            gained = 0
            for dy in range(-1, 2):
                ny = y + dy
                if ny < 0 or ny >= height:
                    continue
                for dx in range(-1, 2):
                    nx = x + dx
                    if (dx == 0 and dy == 0) or nx < 0 or nx >= width:
                        continue
                    q = ny * width + nx
                    if parent[q] >= 0:
                        if dx == 0 or dy == 0:
                            neighbours_in[p] += 1
                            neighbours_in[q] += 1
                            if neighbours_in[q] == 4:
                                gained += 1
                        other = q
                        while parent[other] != other:  # path halving, inline: calls cost
                            parent[other] = parent[parent[other]]
                            other = parent[other]
                        if other != root:
                            if count[root] < count[other]:
                                root, other = other, root
                            parent[other] = root
                            count[root] += count[other]
                            bx0[root] = min(bx0[root], bx0[other])
                            by0[root] = min(by0[root], by0[other])
                            bx1[root] = max(bx1[root], bx1[other])
                            by1[root] = max(by1[root], by1[other])
                            first[root] = min(first[root], first[other])
            if neighbours_in[p] == 4:
                gained += 1
            interior[root] += gained
        kept = 0
        best = -1.0
        largest = -1
        sure = -1
        for k in range(n_roots):
            r = roots[k]
            if parent[r] != r:
                continue
            roots[kept] = r
            kept += 1
            if wsoleval:
                iou = _best_iou(bx0[r], by0[r], min(bx1[r] + 1, width - 1),
                                min(by1[r] + 1, height - 1), gt, True)
            else:
                iou = _best_iou(bx0[r], by0[r], bx1[r] + 1, by1[r] + 1, gt, False)
            if iou > best:
                best = iou
            if largest < 0 or count[r] > count[largest] or (
                    count[r] == count[largest] and first[r] < first[largest]):
                largest = r
                best_largest[i] = iou
            if sure < 0 or interior[r] > interior[sure]:
                sure = r
                best_contour[i] = iou
        n_roots = kept
        n_components[i] = kept
        if kept:
            best_all[i] = best
            ceiling = -1
            for k in range(kept):
                r = roots[k]
                if r != sure:
                    ceiling = max(ceiling, (bx1[r] - bx0[r]) * (by1[r] - by0[r]))
            contour_sure[i] = interior[sure] > ceiling
    return best_all, best_largest, best_contour, contour_sure, n_components


@njit(cache=True, nogil=True)
def sweep_holes(u8, gt):
    """Per level L in [0, 256): best IoU of the hole-contour boxes of `u8 > L` (-1: none).

    Holes are 4-connected components of `u8 <= L` that do not touch the image edge;
    a hole's contour box is its own box grown by one pixel, as wsoleval boxes
    (x1 = min(xmax + 2, W - 1), inclusive).
    """
    height, width = u8.shape
    flat = u8.ravel().astype(np.int64)
    size = flat.size
    order, starts = _buckets(flat, 256)
    outside = size
    parent = np.full(size + 1, -1, np.int64)
    parent[outside] = outside
    bx0 = np.empty(size + 1, np.int32)
    by0 = np.empty(size + 1, np.int32)
    bx1 = np.empty(size + 1, np.int32)
    by1 = np.empty(size + 1, np.int32)
    first = np.zeros(size + 1, np.int32)
    count = np.zeros(size + 1, np.int32)
    count[outside] = size + 1  # the outside always stays a root
    roots = np.empty(size, np.int32)
    n_roots = 0
    best_hole = np.full(256, -1.0)
    for level in range(256):
        for k in range(starts[level], starts[level + 1]):
            p = order[k]
            y = p // width
            x = p - y * width
            parent[p] = p
            bx0[p] = x
            bx1[p] = x
            by0[p] = y
            by1[p] = y
            count[p] = 1
            roots[n_roots] = p
            n_roots += 1
            root = p
            if x == 0 or y == 0 or x == width - 1 or y == height - 1:
                other = outside
                while parent[other] != other:  # path halving, inline: calls cost
                    parent[other] = parent[parent[other]]
                    other = parent[other]
                if other != root:
                    if count[root] < count[other]:
                        root, other = other, root
                    parent[other] = root
                    count[root] += count[other]
                    bx0[root] = min(bx0[root], bx0[other])
                    by0[root] = min(by0[root], by0[other])
                    bx1[root] = max(bx1[root], bx1[other])
                    by1[root] = max(by1[root], by1[other])
                    first[root] = min(first[root], first[other])
            for j in range(4):
                ny = y + (-1 if j == 0 else (1 if j == 1 else 0))
                nx = x + (-1 if j == 2 else (1 if j == 3 else 0))
                if ny < 0 or ny >= height or nx < 0 or nx >= width:
                    continue
                q = ny * width + nx
                if parent[q] >= 0:
                    other = q
                    while parent[other] != other:  # path halving, inline: calls cost
                        parent[other] = parent[parent[other]]
                        other = parent[other]
                    if other != root:
                        if count[root] < count[other]:
                            root, other = other, root
                        parent[other] = root
                        count[root] += count[other]
                        bx0[root] = min(bx0[root], bx0[other])
                        by0[root] = min(by0[root], by0[other])
                        bx1[root] = max(bx1[root], bx1[other])
                        by1[root] = max(by1[root], by1[other])
                        first[root] = min(first[root], first[other])
        kept = 0
        best = -1.0
        for k in range(n_roots):
            r = roots[k]
            if parent[r] != r:
                continue
            roots[kept] = r
            kept += 1
            iou = _best_iou(bx0[r] - 1, by0[r] - 1, min(bx1[r] + 2, width - 1),
                            min(by1[r] + 2, height - 1), gt, True)
            if iou > best:
                best = iou
        n_roots = kept
        best_hole[level] = best
    return best_hole
