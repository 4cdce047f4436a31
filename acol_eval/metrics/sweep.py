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

Compiled with numba when it is installed (wsoleval_sweep: about 1.8 ms per 224x224
bench map, ~1.1 ms of it the outer pass, ~0.6 ms the hole pass); without it the same
code runs as plain Python, correct but slow. The compiled kernels are kept in the
user's cache folder (runtime.configure_numba_cache), so only the first `score` of an
install compiles them, and that compilation is kept short: the kernels allocate no
arrays (each numpy allocation in jitted code is a compilation of its own), each
helper is called with one set of argument types (one compilation each) and the steps
the kernels share are inlined into them (no compilation of their own).
"""

from __future__ import annotations

import sys

import numpy as np

from acol_eval.util.runtime import configure_numba_cache

configure_numba_cache()  # before numba's import: the kernels' cache in the user's folder
try:
    from numba import njit
except ImportError:  # pragma: no cover - exercised only where numba is missing
    def njit(*args, **kwargs):
        if args and callable(args[0]):
            return args[0]
        return lambda function: function

HAS_NUMBA = njit.__module__.startswith("numba")


def best_box_iou(x0, y0, x1, y1, gt, inclusive):
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


# the wsoleval sweep inlines it (see _refresh); Python and the native sweep call it
_inline_iou = njit(inline="always")(best_box_iou)
best_box_iou = njit(cache=True, nogil=True)(best_box_iou)


@njit(cache=True, nogil=True)
def _buckets(flat, n_buckets, order, starts):
    """Counting sort of pixel indices by level into `order`, and the start of each level
    into `starts` (n_buckets + 1 entries; while filling, each entry is its level's next
    free slot). No arrays are made here (see sweep_components)."""
    for level in range(n_buckets + 1):
        starts[level] = 0
    for p in range(flat.size):
        starts[flat[p] + 1] += 1
    for level in range(1, n_buckets + 1):
        starts[level] += starts[level - 1]
    for p in range(flat.size):
        level = flat[p]
        order[starts[level]] = p
        starts[level] += 1
    for level in range(n_buckets, 0, -1):
        starts[level] = starts[level - 1]
    starts[0] = 0


# --------------------------------------------------------------------------- union-find core
#
# Both sweeps below (sweep_components for the native protocol, wsoleval_sweep_into for
# wsoleval) grow components with these two: find a pixel's root (path halving) and merge
# two roots (union by size), carrying each component's pixel count and box along.


@njit(cache=True, nogil=True)
def _find(parent, p):
    while parent[p] != p:
        parent[p] = parent[parent[p]]
        p = parent[p]
    return p


@njit(cache=True, nogil=True)
def _union(parent, count, bx0, by0, bx1, by1, root, other):
    """Merge the distinct roots `root` and `other` (the larger one stays root) and their
    counts and boxes (x0 y0 x1 y1 of pixel centres, both ends inclusive).
    Returns (new root, absorbed root) so callers can merge their own per-root data."""
    if count[root] < count[other]:
        root, other = other, root
    parent[other] = root
    count[root] += count[other]
    if bx0[other] < bx0[root]:
        bx0[root] = bx0[other]
    if by0[other] < by0[root]:
        by0[root] = by0[other]
    if bx1[other] > bx1[root]:
        bx1[root] = bx1[other]
    if by1[other] > by1[root]:
        by1[root] = by1[other]
    return root, other


# Steps the sweeps share, inlined into each kernel at numba's IR level (inline="always"):
# no call and no compilation of their own (nothing more in the cache or in the first
# `score`'s compile time), typed in each caller. An array passed to an inlined helper is
# one more reference to it, counted by numba (an atomic increment and decrement per
# call, in the per-pixel loops ~7% of wsoleval_sweep_into, 25% for _grow) unless numba
# can drop the count again, which it does only where the helper's last use of the array
# is not inside a branch and no compiled function is called between: hence the
# trailing reads in _grow, the inlined IoU in _refresh and the helpers on numbers. A
# plain @njit helper instead is one more compilation, and was not inlined (_grow as one
# made wsoleval_sweep_into 27% slower).


@njit(inline="always")
def _start(parent, count, bx0, by0, bx1, by1, roots, n_roots, p, x, y):
    """Pixel p (at x, y) starts a component of its own, listed in roots; returns the new
    root count. (Arrays, but no branch: numba drops their reference counts here.)"""
    parent[p] = p
    bx0[p] = x
    bx1[p] = x
    by0[p] = y
    by1[p] = y
    count[p] = 1
    roots[n_roots] = p
    return n_roots + 1


@njit(inline="always")
def _compact(parent, roots, n_roots):
    """Drop from roots[:n_roots] the pixels that are no longer roots (merged since), in
    order; returns how many are left."""
    kept = 0
    for k in range(n_roots):
        r = roots[k]
        if parent[r] == r:
            roots[kept] = r
            kept += 1
    return kept


@njit(inline="always")
def _refresh(parent, roots, n_roots, cached, dirty, bx0, by0, bx1, by1, grow, width,
             height, gt, inclusive, interior):
    """One pass over the roots at the end of a level: drop those merged since (as
    _compact does), recompute the cached IoU of the _wsoleval_box of those whose box
    changed (dirty). Returns (roots left, their best IoU or -1, the first root with the
    most interior pixels: the outer pass's surest largest contour). One pass, not
    _compact and loops after it: those were ~1.5% slower."""
    kept = 0
    best = -1.0
    sure = -1
    for k in range(n_roots):
        r = roots[k]
        if parent[r] != r:
            continue
        roots[kept] = r
        kept += 1
        if dirty[r]:
            x0, y0, x1, y1 = _wsoleval_box(bx0[r], by0[r], bx1[r], by1[r], grow, width,
                                           height)
            cached[r] = _inline_iou(x0, y0, x1, y1, gt, inclusive)
            dirty[r] = False
        if cached[r] > best:
            best = cached[r]
        if sure < 0 or interior[r] > interior[sure]:
            sure = r
    return kept, best, sure


@njit(inline="always")
def _grow(bx0, by0, bx1, by1, root, x, y):
    """Grow the box of `root` over the pixel x, y. Returns x0 + y0 + x1 + y1, which no
    caller needs: reading each array after the branches lets numba drop the references
    the inlined call takes (see above). `if`s, not min/max: a store only where the box
    grows (min/max stored always, 2% slower)."""
    if x < bx0[root]:
        bx0[root] = x
    if x > bx1[root]:
        bx1[root] = x
    if y < by0[root]:
        by0[root] = y
    if y > by1[root]:
        by1[root] = y
    return bx0[root] + by0[root] + bx1[root] + by1[root]


@njit(inline="always")
def _wsoleval_box(x0, y0, x1, y1, grow, width, height):
    """The wsoleval box (int64) of a pixel box (both ends inclusive): grown by `grow`
    pixels (0: an outer contour's box, 1: a hole contour's, which runs through the
    pixels around the hole), x1/y1 one further and clipped to the image."""
    return (x0 - grow, y0 - grow, min(x1 + 1 + grow, width - 1),
            min(y1 + 1 + grow, height - 1))


@njit(inline="always")
def _area_bound(x0, y0, x1, y1, count, interior, no_holes):
    """Twice the most contour area a component can have (see wsoleval_sweep_into)."""
    bound = 2 * (x1 - x0) * (y1 - y0)
    if no_holes:
        bound = min(bound, max(count + interior - 2, 0))
    return bound


def sweep_components(levels: np.ndarray, n_levels: int, gt: np.ndarray, wsoleval: bool):
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
    The arrays are made here and the pass is compiled (`_sweep_components_into`): on a
    fresh install every numpy allocation in jitted code is one more compilation.
    """
    levels = np.ascontiguousarray(levels, dtype=np.int32)
    gt = np.ascontiguousarray(gt, dtype=np.int64).reshape(-1, 4)
    size = levels.size
    work = np.empty((8, size), np.int32)  # bx0, by0, bx1, by1, first, roots, order, parent
    work[7] = -1
    counts = np.zeros((2, size), np.int32)  # count, interior
    outputs = (np.full(n_levels, -1.0), np.full(n_levels, -1.0), np.full(n_levels, -1.0),
               np.zeros(n_levels, np.bool_), np.zeros(n_levels, np.int64))
    _sweep_components_into(levels.reshape(-1), levels.shape[0], levels.shape[1],
                           int(n_levels), gt, bool(wsoleval), work, counts,
                           np.zeros(size, np.int8), np.empty(n_levels + 2, np.int64),
                           *outputs)
    return outputs


@njit(cache=True, nogil=True)
def _sweep_components_into(flat, height, width, n_levels, gt, wsoleval, work, counts,
                           neighbours_in, starts, best_all, best_largest, best_contour,
                           contour_sure, n_components):
    """sweep_components' pass over the map `flat` (height x width, raster order), into
    the arrays it made."""
    bx0, by0, bx1, by1 = work[0], work[1], work[2], work[3]
    first, roots, order, parent = work[4], work[5], work[6], work[7]
    count, interior = counts[0], counts[1]
    _buckets(flat, n_levels + 1, order, starts)
    n_roots = 0
    for i in range(n_levels - 1, -1, -1):
        for k in range(starts[i + 1], starts[i + 2]):
            p = order[k]
            y = p // width
            x = p - y * width
            n_roots = _start(parent, count, bx0, by0, bx1, by1, roots, n_roots, p, x, y)
            first[p] = p
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
                        other = _find(parent, q)
                        if other != root:
                            root, other = _union(parent, count, bx0, by0, bx1, by1, root,
                                                 other)
                            first[root] = min(first[root], first[other])
            if neighbours_in[p] == 4:
                gained += 1
            interior[root] += gained
        kept = _compact(parent, roots, n_roots)
        best = -1.0
        largest = -1
        sure = -1
        for k in range(kept):
            r = roots[k]
            if wsoleval:
                x0, y0, x1, y1 = _wsoleval_box(bx0[r], by0[r], bx1[r], by1[r], 0, width,
                                               height)
                iou = best_box_iou(x0, y0, x1, y1, gt, wsoleval)
            else:  # int64 coordinates, a bool argument: one best_box_iou compilation
                iou = best_box_iou(bx0[r] + 0, by0[r] + 0, bx1[r] + 1, by1[r] + 1, gt,
                                   wsoleval)
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


# --------------------------------------------------------------------------- wsoleval, fast
#
# The wsoleval sweep below does the outer pass of sweep_components and the hole pass on
# a uint8 map in one call: the map is padded by one pixel (no bounds checks; the pad of
# the hole pass belongs to the outside), all arrays are int32, and a component's IoU is
# recomputed only at levels where it changed.

WSOLEVAL_LEVELS = 256


@njit(cache=True, nogil=True)
def _u8_buckets(u8, padded_width, order, starts):
    """Padded pixel indices sorted by value (counting sort) into `order`, and the start
    of each value into `starts` (WSOLEVAL_LEVELS + 1 entries; while filling, each entry
    is its value's next free slot). No arrays are made here: each numpy allocation in
    jitted code is one more compilation on a fresh install."""
    height, width = u8.shape
    for v in range(WSOLEVAL_LEVELS + 1):
        starts[v] = 0
    for y in range(height):
        for x in range(width):
            starts[int(u8[y, x]) + 1] += 1  # int: a uint8 255 + 1 wraps to 0 in Python
    for v in range(1, WSOLEVAL_LEVELS + 1):
        starts[v] += starts[v - 1]
    for y in range(height):
        row = (y + 1) * padded_width + 1
        for x in range(width):
            value = u8[y, x]
            # starts[value] is the next free slot of value until the pass ends: shift back
            order[starts[value]] = row + x
            starts[value] += 1
    for v in range(WSOLEVAL_LEVELS, 0, -1):
        starts[v] = starts[v - 1]
    starts[0] = 0


def _neighbourhood_tables():
    """Per 8-bit neighbourhood code (bit j: ring neighbour j is in), when a pixel joins:
    the change of 4 x the Euler number of the 8-connected foreground (Gray's bit-quads:
    the four 2x2 quads that hold the pixel), and which neighbours start a run of
    neighbours in (one union per run: consecutive ring neighbours touch each other;
    a full ring counts as one run at 0)."""
    def quad(bits):  # 4 x Euler contribution of a quad: a b / c d as bits 1 2 4 8
        n = bin(bits).count("1")
        return {1: 1, 3: -1}.get(n, -2 if bits in (6, 9) else 0)

    euler = np.zeros(256, np.int32)
    runs = np.zeros(256, np.int32)
    for code in range(256):
        nw, n, ne, e, se, s, sw, w = ((code >> j) & 1 for j in range(8))
        tl = nw * 1 + n * 2 + w * 4    # p at the bottom right
        tr = n * 1 + ne * 2 + e * 8    # p at the bottom left
        bl = w * 1 + sw * 4 + s * 8    # p at the top right
        br = e * 2 + s * 4 + se * 8    # p at the top left
        euler[code] = (quad(tl + 8) - quad(tl) + quad(tr + 4) - quad(tr)
                       + quad(bl + 2) - quad(bl) + quad(br + 1) - quad(br))
        starts = [j for j in range(8) if (code >> j) & 1 and not (code >> ((j + 7) % 8)) & 1]
        if code == 255:
            starts = [0]
        runs[code] = sum(1 << j for j in starts)
    return euler, runs


EULER_DELTA, RUN_STARTS = _neighbourhood_tables()
# per code, the runs of neighbours as a count and a list of their first ring positions
RUN_COUNT = np.array([bin(int(c)).count("1") for c in RUN_STARTS], np.int32)
RUN_LIST = np.array([[j for j in range(8) if (int(c) >> j) & 1] + [0] * (4 - bin(int(c)).count(
    "1")) for c in RUN_STARTS], np.int32)


@njit(cache=True, nogil=True)
def wsoleval_sweep_into(u8, gt, work, boxes, nin, cached, dirty, euler_delta, run_starts,
                        run_count, run_list, ring, order, starts, inclusive, best_all,
                        best_contour, contour_box, contour_sure, n_components, n_holes,
                        candidates):
    """Per level L in [0, 256) of a uint8 map (pixels kept: u8 > L), as OpenCV's
    findContours(RETR_TREE) would give them under the wsoleval protocol, written into
    the last seven arrays (256 rows each, made by `wsoleval_sweep`):

    - best IoU over the boxes of all contours, outer and hole (-1: no contour);
    - IoU and box of the component whose contour area is surely the largest, and
      whether that is sure (else ask OpenCV); x1/y1 inclusive, clipped to W-1/H-1;
    - the number of 8-connected components;
    - the number of holes (4-connected background components off the edge);
    - where the largest contour is not sure, the pixel box (inclusive) of the
      components that may have it.

    gt: int64 (g, 4) boxes in the map's frame, inclusive. `inclusive` is True (the
    wsoleval IoU): an argument, as in Python's and the native sweep's calls of
    best_box_iou (inlined here by _refresh). `ring`: the 8 neighbour offsets in the padded map, in
    ring order (consecutive ones touch each other); `order`, `starts`: _u8_buckets'.
    Nothing is allocated here: on a fresh install every numpy allocation in jitted code
    is one more compilation, seconds of the first `score`.
    The hole pass runs only up to the highest level that has a hole: the outer pass
    counts holes for free as components minus the Euler number, which changes by a
    local amount (four 2x2 quads) with each pixel.
    """
    height, width = u8.shape
    pw = width + 2
    size = pw * (height + 2)
    _u8_buckets(u8, pw, order, starts)
    parent, count, interior, roots = work[0], work[1], work[2], work[3]
    bx0, by0, bx1, by1 = boxes[0], boxes[1], boxes[2], boxes[3]
    parent[:size + 1] = -1
    nin[:size + 1] = 0
    interior[:size + 1] = 0
    n_roots = 0
    euler4 = 0
    # ---- outer contours: 8-connected components of u8 > L, L going down
    for level in range(WSOLEVAL_LEVELS - 2, -1, -1):
        for k in range(starts[level + 1], starts[level + 2]):
            p = order[k]
            y = p // pw - 1
            x = p - (y + 1) * pw - 1
            code = 0
            for j in range(8):
                if parent[p + ring[j]] >= 0:
                    code |= 1 << j
            euler4 += euler_delta[code]
            gained = 0
            for j in range(1, 8, 2):  # the four edge neighbours: interior pixels
                if code & (1 << j):
                    q = p + ring[j]
                    nin[p] += 1
                    nin[q] += 1
                    if nin[q] == 4:
                        gained += 1
            if nin[p] == 4:
                gained += 1
            starts_here = run_starts[code]
            if starts_here == 0:  # a new component
                n_roots = _start(parent, count, bx0, by0, bx1, by1, roots, n_roots, p, x, y)
                interior[p] = gained
                dirty[p] = True
                continue
            # p joins the component of its first run of neighbours, which then merges
            # with the components of the other runs (run_list: where each run starts)
            root = np.int64(-1)  # typed, not the literal -1: one _union compilation
            for t in range(run_count[code]):
                other = _find(parent, p + ring[run_list[code, t]])
                if root < 0:
                    root = other
                    parent[p] = root
                elif other != root:
                    root, other = _union(parent, count, bx0, by0, bx1, by1, root, other)
                    interior[root] += interior[other]
            count[root] += 1
            interior[root] += gained
            _grow(bx0, by0, bx1, by1, root, x, y)
            dirty[root] = True
        kept, best, sure = _refresh(parent, roots, n_roots, cached, dirty, bx0, by0, bx1, by1,
                                    0, width, height, gt, inclusive, interior)
        n_roots = kept
        n_components[level] = kept
        n_holes[level] = kept - euler4 // 4
        if kept:
            best_all[level] = best
            best_contour[level] = cached[sure]
            contour_box[level, 0] = bx0[sure]
            contour_box[level, 1] = by0[sure]
            contour_box[level, 2] = min(bx1[sure] + 1, width - 1)
            contour_box[level, 3] = min(by1[sure] + 1, height - 1)
            # twice the contour area of another component is at most twice the area of
            # its box of pixel centres and, when no component has a hole, count +
            # interior - 2 (Pick's theorem: its 4-interior pixels lie inside the contour,
            # its other pixels on it, and nothing else does; spurs only take area away)
            no_holes = n_holes[level] == 0
            ceiling = -1
            for k in range(kept):
                r = roots[k]
                if r != sure:
                    ceiling = max(ceiling, _area_bound(bx0[r], by0[r], bx1[r], by1[r],
                                                       count[r], interior[r], no_holes))
            contour_sure[level] = 2 * interior[sure] > ceiling
            if not contour_sure[level]:  # the pixel box of the components that may win
                candidates[level, 0] = bx0[sure]
                candidates[level, 1] = by0[sure]
                candidates[level, 2] = bx1[sure]
                candidates[level, 3] = by1[sure]
                for k in range(kept):
                    r = roots[k]
                    if _area_bound(bx0[r], by0[r], bx1[r], by1[r], count[r], interior[r],
                                   no_holes) >= 2 * interior[sure]:
                        # + 0: int64, as min/max of (int64, int16) would be 2 compilations
                        candidates[level, 0] = min(candidates[level, 0], bx0[r] + 0)
                        candidates[level, 1] = min(candidates[level, 1], by0[r] + 0)
                        candidates[level, 2] = max(candidates[level, 2], bx1[r] + 0)
                        candidates[level, 3] = max(candidates[level, 3], by1[r] + 0)
    top = -1
    for level in range(WSOLEVAL_LEVELS):
        if n_holes[level] > 0:
            top = level
    # ---- hole contours: 4-connected components of u8 <= L off the edge, L going up
    outside = size
    parent[:] = -1
    for y in range(height + 2):  # the pad is the outside
        parent[y * pw] = outside
        parent[y * pw + pw - 1] = outside
    for x in range(pw):
        parent[x] = outside
        parent[size - pw + x] = outside
    parent[outside] = outside
    count[outside] = size + 1
    n_roots = 0
    for level in range(top + 1):
        for k in range(starts[level], starts[level + 1]):
            p = order[k]
            y = p // pw - 1
            x = p - (y + 1) * pw - 1
            root = np.int64(-1)  # typed, not the literal -1: one _union compilation
            for j in range(1, 8, 2):
                q = p + ring[j]
                if parent[q] < 0 or parent[q] == root:
                    continue
                other = _find(parent, q)
                if root < 0:
                    root = other
                elif other != root:
                    root, other = _union(parent, count, bx0, by0, bx1, by1, root, other)
            if root < 0:  # a new hole (so far)
                n_roots = _start(parent, count, bx0, by0, bx1, by1, roots, n_roots, p, x, y)
                dirty[p] = True
                continue
            parent[p] = root
            count[root] += 1
            if root != outside:
                _grow(bx0, by0, bx1, by1, root, x, y)
                dirty[root] = True
        if n_holes[level] == 0:
            continue
        kept, best, _ = _refresh(parent, roots, n_roots, cached, dirty, bx0, by0, bx1, by1, 1,
                                 width, height, gt, inclusive, interior)
        n_roots = kept
        if best > best_all[level]:
            best_all[level] = best


_WORK: dict = {}


def wsoleval_sweep(u8: np.ndarray, gt: np.ndarray):
    """:func:`wsoleval_sweep_into` with work arrays kept per process and map size (fresh
    arrays per map cost more than the sweep's first pass: page faults) and its outputs
    made here: (best_all, best_contour, contour_box, contour_sure, n_components,
    n_holes, candidates)."""
    u8 = np.ascontiguousarray(u8, dtype=np.uint8)
    gt = np.ascontiguousarray(gt, dtype=np.int64).reshape(-1, 4)
    size = (u8.shape[0] + 2) * (u8.shape[1] + 2) + 1
    if u8.shape not in _WORK:
        _WORK.clear()
        pw = u8.shape[1] + 2
        _WORK[u8.shape] = (np.empty((4, size), np.int32), np.empty((4, size), np.int16),
                           np.zeros(size, np.int8), np.empty(size, np.float64),
                           np.zeros(size, np.bool_),
                           np.array([-pw - 1, -pw, -pw + 1, 1, pw + 1, pw, pw - 1, -1],
                                    np.int32),
                           np.empty(u8.size, np.int32),
                           np.empty(WSOLEVAL_LEVELS + 1, np.int32))
    outputs = (np.full(WSOLEVAL_LEVELS, -1.0), np.full(WSOLEVAL_LEVELS, -1.0),
               np.zeros((WSOLEVAL_LEVELS, 4), np.int64), np.zeros(WSOLEVAL_LEVELS, np.bool_),
               np.zeros(WSOLEVAL_LEVELS, np.int64), np.zeros(WSOLEVAL_LEVELS, np.int64),
               np.zeros((WSOLEVAL_LEVELS, 4), np.int64))
    work, boxes, nin, cached, dirty, ring, order, starts = _WORK[u8.shape]
    # the tables go in as arguments: a numba default argument costs 0.6 ms a call
    wsoleval_sweep_into(u8, gt, work, boxes, nin, cached, dirty, EULER_DELTA, RUN_STARTS,
                        RUN_COUNT, RUN_LIST, ring, order, starts, True, *outputs)
    return outputs


def load_compiled(native: bool = False) -> None:
    """Load (or compile) the sweep of the protocol in use (wsoleval's, or with `native`
    the native protocol's) in this process, before worker processes fork: each of them
    would compile it again on a fresh install.

    numba's first use imports numba.np.arraymath, which imports scipy.linalg only to see
    whether np.dot could use BLAS: 0.2 s of every run. The sweep uses no linear algebra,
    so that check is made to fail here (numba then leaves BLAS out in this process:
    np.dot in other jitted code would not compile); scipy stays importable afterwards."""
    check = "scipy.linalg.cython_blas"
    blocked = check not in sys.modules and "numba.np.arraymath" not in sys.modules
    if blocked:
        sys.modules[check] = None
    try:
        if native:
            sweep_components(np.zeros((4, 4), np.int32), 2, np.zeros((1, 4), np.int64), False)
        else:
            wsoleval_sweep(np.zeros((4, 4), np.uint8), np.zeros((1, 4), np.int64))
        best_box_iou(0, 0, 0, 0, np.zeros((1, 4), np.int64), True)  # called from Python too
    finally:
        if blocked and sys.modules.get(check, 0) is None:
            del sys.modules[check]
