"""numba CPU kernels: the Mamba-1 selective scan and the masked depthwise conv, each one fused pass per block (the
scan: a block of channels of one sample; the conv: a block of steps of one sample), forward and backward.

Imported lazily by ``scan_kernel.py`` (numba is optional at run time). Arrays are contiguous. The scan's per-channel
sequences u, delta, z, y and their gradients are time-major (b, l, d), or all channel-major (b, d, l) with ``cm``
(mamba_ssm's layout, read in place); A_t (n, d) (A transposed) or (1, d) (one decay per channel, shared by its n
states: the SSD layout, one exp per channel and step); B, C (b, l, g, n) (they give the sizes b, l); D, delta_bias
(d,) (they give d); mask (b, l) uint8; rev (g,) uint8 (1 = that group's channels scan from l-1 down to 0). Absent z /
mask are (1, 1, 1) / (1, 1) placeholders with ``has_z`` / ``has_mask`` False, so each dtype has one compiled forward
and one backward. The kernels index views of their block from 0, over memory whose rows are contiguous: indexing the
full arrays at an offset (c0 + i: numba cannot tell that it is not a negative index) or a view with an unknown inner
stride is compiled to gathers (so the conv kernel was 3.0x / 1.6x the PyTorch path forward / forward+backward instead
of 5.7x / 4.6x: BENCHMARKS.md, ``benchmarks/conv_ssd.py``).

Scan, per step t and channel c (ZOH for A, Euler for B, as mamba_ssm; padded steps are identity steps):

    dt = softplus(delta + bias) * mask ;  h_n = exp(dt A_cn) h_n + dt u B_n ;  y = (sum_n C_n h_n + D u) silu(z) mask

A block is at most ``BLOCK`` channels of one group; its state (n, BLOCK) stays in L1 and the inner loop runs over
channels (SIMD). Blocks of exactly BLOCK channels run a copy of the block's code compiled for that constant width,
whose channel loops the compiler unrolls (16k steps, d 512, n 16, one thread: forward 0.80-0.86x, backward 0.95x the
time with the width as a variable; bit-identical; the first compilation takes longer: BENCHMARKS.md).
Scratch arrays start on cache lines (``_scratch``). The kernels are serial and release the GIL; the ``*_parallel``
wrappers run contiguous ranges of blocks on numba's threads (``scan_kernel.py`` picks them or its own thread pool).
A block works through its steps in chunks of ``chunk``. The forward saves the state at the start of every chunk; the
backward recomputes a chunk's decays and states from it (buffers of (chunk + 1, n, BLOCK)) and walks it backwards.
Channel-major sequences are read and written through tiles of ``TILE`` steps (a whole number of chunks) by BLOCK
channels: the tile's u, delta, z (and dy) are copied in by blocks of 8 channels x 8 steps (``_transpose``: 8 runs of
adjacent steps loaded as vectors, shuffled, stored as 8 runs of adjacent channels; copying one channel's steps at a
time, element by element, was 1.2x the floor forward at batch 8, blocks 1.1x), the steps read the tiles' rows as they
read the time-major arrays' rows (the source is chosen once per tile or chunk), and the output tiles are copied out
the same way (read one step of the block's channels at a time, channels l elements apart, a power of two at the usual
lengths, were cache-set conflicts: 2x slower forward, 4.6x forward+backward). The arithmetic is the same in either
layout, and so are the results, bit for bit.

Depthwise conv (``MaskedDepthwiseConv1d``), per step t and channel c, with x zero outside [0, l) and at pads:

    y[t, c] = act(bias[c] + sum_j w[j, c] x[t + offsets[j], c]),  act = identity or SiLU
"""
from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic, overload

from vidmamba.ssm._kernel_cache import use_kernel_cache

BLOCK = 64          # channels per thread block (measured, b=1 l=16k d=512 n=16: 16 -> 0.18 s, 32 -> 0.12, 64 -> 0.08);
                    # a multiple of 8 (``_sum_block``)
TILE = 256          # steps per tile of (b, d, l) inputs, a multiple of the chunk (16k steps, d 512, n 16, one thread,
                    # batch 8, forward / backward time against 128 steps: 64 steps 1.07 / -, 256 0.92-0.97 /
                    # 0.89-0.94, 512 0.91 / 1.25, when the backward's seven tiles take 0.9 MiB)
CONV_ROWS = 256     # steps per block of the depthwise conv (one block per sample up to 256 steps)
# error_model="numpy": divisions without Python's zero-division check, whose branch kept them from vectorising.
# fastmath without reassociation (nor arcp, afn, nsz): multiply-adds may fuse and values are taken as finite, but no
# sum is reordered. With full fastmath the order depended on where a kernel was compiled (a parallel wrapper's body
# optimised on its own in the process that compiled it, re-optimised after linking in the cached object): a kernel
# just compiled gave other gradients than the same kernel loaded from the cache. Channel sums use ``_sum_block``.
_FASTMATH = {"nnan", "ninf", "contract"}
_JIT = dict(fastmath=_FASTMATH, nogil=True, error_model="numpy")


def _kernel(**options):
    """``njit`` with the kernels' options, cached on disk by ``_kernel_cache.KernelCache``."""
    return lambda fn: use_kernel_cache(njit(**_JIT, **options)(fn))
_F = np.float32


@intrinsic
def _int_bits_to_float32(typingctx, i):
    """Reinterpret an int32 as a float32 (an LLVM bitcast, which vectorises)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


def _exp(x):
    """exp(x) inside the kernels: a vectorisable polynomial for float32, ``math.exp`` for float64."""
    return math.exp(x)


@overload(_exp, jit_options=dict(fastmath=_FASTMATH, error_model="numpy"))
def _exp_overload(x):
    if x != types.float32:
        return lambda x: math.exp(x)

    def exp32(x):
        # exp(x) = 2^k exp(r), k = round(x / ln 2), |r| <= ln2 / 2, ln 2 split in two (Cody-Waite) so that r is
        # exact; exp(r) by a degree-6 polynomial fitted for minimal relative error on [-ln2/2, ln2/2] (1.9e-9, so
        # float32 rounding dominates: 1.1e-7 measured); x clamped to the float32 range (no inf, no denormals).
        x = min(max(x, _F(-87.0)), _F(88.0))
        k = np.rint(x * _F(1.4426950408889634))
        r = x - k * _F(0.693145751953125) - k * _F(1.428606765330187e-06)
        p = _F(0.001384140438749241)
        p = p * r + _F(0.008374841632003508)
        p = p * r + _F(0.04166814417358634)
        p = p * r + _F(0.1666641978037538)
        p = p * r + _F(0.4999999244078726)
        p = p * r + _F(1.0000000364401738)
        p = p * r + _F(1.0000000005308687)
        return p * _int_bits_to_float32((np.int32(k) + np.int32(127)) << np.int32(23))
    return exp32


def _softplus(x):
    """log(1 + exp(x)) inside the kernels (vectorisable for float32)."""
    return math.log1p(math.exp(x)) if x <= 20.0 else x


@overload(_softplus, jit_options=dict(fastmath=_FASTMATH, error_model="numpy"))
def _softplus_overload(x):
    if x != types.float32:
        return lambda x: math.log1p(math.exp(x)) if x <= 20.0 else x

    def softplus32(x):
        # max(x, 0) + log1p(e), e = exp(-|x|) in (0, 1]; log1p(e) = 2 atanh(s), s = e / (2 + e) in (0, 1/3]
        # (odd series to s^13: rel. error < 1e-8; no rounding of 1 + e, so small e stay accurate).
        e = _exp(-abs(x))
        s = e / (_F(2.0) + e)
        s2 = s * s
        p = _F(1 / 13)
        p = p * s2 + _F(1 / 11)
        p = p * s2 + _F(1 / 9)
        p = p * s2 + _F(1 / 7)
        p = p * s2 + _F(1 / 5)
        p = p * s2 + _F(1 / 3)
        p = p * s2 + _F(1.0)
        return max(x, _F(0.0)) + _F(2.0) * s * p
    return softplus32


@njit(inline="always", **_JIT)
def _scratch(shape, dtype):
    """An uninitialised array of ``shape`` (a tuple) that starts on a 64-byte boundary (a cache line), so that rows
    of BLOCK channels never straddle two lines. malloc gave one of two threads 32-byte-aligned scratch: its 512-bit
    loads and stores each touched two lines, and its blocks ran about 1.3x slower (the forward at batch 8 waited for
    it)."""
    size = 1
    for s in shape:
        size *= s
    buf = np.empty(size + 16, dtype)                     # 16 elements >= 64 bytes of slack
    off = (64 - buf.ctypes.data % 64) % 64 // buf.itemsize
    return buf[off:off + size].reshape(shape)


@njit(inline="always", **_JIT)
def _block(blk, d, g, nbg):
    """Flat block index -> (batch, group, first channel, number of channels)."""
    dg = d // g
    bi, rest = blk // (g * nbg), blk % (g * nbg)
    gi, j = rest // nbg, rest % nbg
    c0 = gi * dg + j * BLOCK
    return bi, gi, c0, min(BLOCK, (gi + 1) * dg - c0)


@njit(inline="always", **_JIT)
def _step_inputs(delta_t, u_t, bias_b, w, softplus, valid, dts, dtus):
    """dts[i] = dt of the block's channel i at one step (delta_t, u_t, bias_b: the block's values; bias, softplus,
    mask applied); dtus[i] = dt * u.
    (Constants are typed as the arrays: a float64 literal would turn float32 loops into float64 ones.)"""
    zero = dts.dtype.type(0.0)
    for i in range(w):
        x = delta_t[i] + bias_b[i]
        if softplus:
            x = _softplus(x)
        x = x if valid else zero
        dts[i] = x
        dtus[i] = x * u_t[i]


@njit(inline="always", **_JIT)
def _state_grad(dh, dyf, ck, bk, h, dtus, terms_c, terms_b, gdtu, i):
    """Channel i of one state k at one step, walking backwards: returns dh_t = dh + C_t dy_t (dh: the gradient
    carried from step t + 1, already through its decay) and adds its terms to dC_t (dy h_t), dB_t (dh_t dt u) and
    the gradient of dt u (dh_t B_t)."""
    dhv = dh[i] + dyf[i] * ck
    terms_c[i] = dyf[i] * h[i]
    terms_b[i] = dhv * dtus[i]
    gdtu[i] += dhv * bk
    return dhv


@njit(inline="always", **_JIT)
def _decay_grad(dh_h, decay, a, dts, gdt, dA, i):
    """Channel i's share of d loss / d(dt A) = dh_h exp(dt A) (dh_h: dh times the state before the decay): into the
    gradients of dt (gdt) and of A (dA), given the row a of A_t and the step's dts."""
    q = dh_h * decay
    gdt[i] += q * a[i]
    dA[i] += q * dts[i]


@njit(inline="always", **_JIT)
def _span(ci, chunk, length, reverse):
    """Chunk ci (scan steps ci * chunk ..): its number of steps m and its first step t0 (steps t0 .. t0 + m - 1)."""
    s0 = ci * chunk
    m = min(chunk, length - s0)
    return m, (length - s0 - m if reverse else s0)


@intrinsic
def _transpose8(typingctx, src, dst):
    """dst[j, i] = src[i, j] for i, j < 8: src, dst 2-D float arrays whose rows are contiguous (any row stride). The 8
    rows of src are loaded as 8-lane vectors, transposed by 24 two-input shuffles (three rounds of interleaves) and
    stored as 8 vectors: contiguous runs read and written, no scalar copies."""
    if not (isinstance(src, types.Array) and isinstance(dst, types.Array) and src.ndim == dst.ndim == 2 and
            src.dtype == dst.dtype and src.dtype in (types.float32, types.float64)):
        return None

    def rows(context, builder, aryty, ary):
        arr = context.make_array(aryty)(context, builder, ary)
        data = builder.bitcast(arr.data, ir.IntType(8).as_pointer())
        stride = builder.extract_value(arr.strides, 0)
        vty = ir.VectorType(context.get_value_type(aryty.dtype), 8)
        return [builder.bitcast(builder.gep(data, [builder.mul(stride, ir.Constant(stride.type, r))]),
                                vty.as_pointer()) for r in range(8)]

    def codegen(context, builder, signature, args):
        align = signature.args[0].dtype.bitwidth // 8
        v = [builder.load(p, align=align) for p in rows(context, builder, signature.args[0], args[0])]

        def shuffle(a, b, mask):
            return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(ir.IntType(32), 8), mask))

        lo, hi = (0, 8, 1, 9, 4, 12, 5, 13), (2, 10, 3, 11, 6, 14, 7, 15)       # 2x2 interleaves within 4 lanes
        v = [shuffle(v[r], v[r + 1], mask) for r in range(0, 8, 2) for mask in (lo, hi)]
        lo, hi = (0, 1, 8, 9, 4, 5, 12, 13), (2, 3, 10, 11, 6, 7, 14, 15)       # 4x4 blocks within 4 lanes
        v = [shuffle(v[q + k], v[q + k + 2], mask) for q in (0, 4) for k in (0, 1) for mask in (lo, hi)]
        lo, hi = (0, 1, 2, 3, 8, 9, 10, 11), (4, 5, 6, 7, 12, 13, 14, 15)      # halves of rows 0-3 and 4-7
        v = [shuffle(v[k], v[k + 4], mask) for mask in (lo, hi) for k in range(4)]
        for p, x in zip(rows(context, builder, signature.args[1], args[1]), v):
            builder.store(x, p, align=align)
        return context.get_dummy_value()
    return types.void(src, dst), codegen


@njit(inline="always", **_JIT)
def _transpose(src, dst):
    """dst (m, w) <- src (w, m) transposed, both with contiguous rows: 8 x 8 blocks by ``_transpose8``, the edges
    one element at a time."""
    w, m = src.shape
    w8, m8 = w - w % 8, m - m % 8
    for i in range(0, w8, 8):
        for j in range(0, m8, 8):
            _transpose8(src[i:i + 8, j:j + 8], dst[j:j + 8, i:i + 8])
    for i in range(w):
        for j in range(0 if i >= w8 else m8, m):
            dst[j, i] = src[i, j]


@njit(**_JIT)
def _tiles(seqs, count, bi, t0, m, c0, w, tiles, store):
    """Rows 0 .. m - 1 of tiles[a, 0] (chunk, BLOCK) (row j = step t0 + j, column i = channel c0 + i) <- seqs[a]
    (b, d, l) for a < count, or the other way with ``store``, by ``_transpose``.
    Kept out of line (one call per chunk): copies inlined into the kernels' step loops changed how the compiler fused
    their multiply-adds, differently in a kernel just compiled and in one loaded from the cache (other gradients)."""
    for a in range(count):
        tile, part = tiles[a, 0, :m, :w], seqs[a][bi, c0:c0 + w, t0:t0 + m]
        if store:
            _transpose(tile, part)
        else:
            _transpose(part, tile)


@njit(inline="always", **_JIT)
def _copy_state(h, full, c0, w, to_full):
    """Copy a block's state h (n, BLOCK) to (``to_full``) or from channels c0 .. c0 + w of full (n, d)."""
    for k in range(h.shape[0]):
        for i in range(w):
            if to_full:
                full[k, c0 + i] = h[k, i]
            else:
                h[k, i] = full[k, c0 + i]


@intrinsic
def _sum_block(typingctx, v):
    """sum(v) of a contiguous float array of ``BLOCK`` (a multiple of 8) in one fixed order: its 8-wide slices added
    as LLVM vectors in a pairwise tree, then the 8 lanes in a pairwise tree. (The kernels compile without
    ``reassoc``, so a plain ``s += v[i]`` would be one add at a time; these vectors need no reordering.)"""
    if not (isinstance(v, types.Array) and v.ndim == 1 and v.layout == "C" and v.dtype in (types.float32,
                                                                                         types.float64)):
        return None

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        vty = ir.VectorType(context.get_value_type(signature.return_type), 8)
        vecs = [builder.load(builder.bitcast(builder.gep(data, [ir.Constant(ir.IntType(64), j)]), vty.as_pointer()),
                             align=signature.return_type.bitwidth // 8) for j in range(0, BLOCK, 8)]
        vecs = _pairwise(builder, vecs)
        return _pairwise(builder, [builder.extract_element(vecs, ir.Constant(ir.IntType(32), i)) for i in range(8)])
    return v.dtype(v), codegen


def _pairwise(builder, values):
    """((v0 + v1) + (v2 + v3)) + ...: a pairwise tree of fadds over a power-of-two count of LLVM values."""
    while len(values) > 1:
        values = [builder.fadd(values[i], values[i + 1]) for i in range(0, len(values), 2)]
    return values[0]


@njit(inline="always", **_JIT)
def _fwd_block(u, delta, A_t, B, C, D, z, bias, mask, rev, softplus, has_z, has_mask, cm, chunk, save, y, last,
               starts, bi, gi, c0, w):
    """``scan_fwd`` of one block: sample bi, group gi, channels c0 .. c0 + w - 1."""
    length, n = B.shape[1], B.shape[3]
    tile = chunk * max(1, TILE // chunk)
    scalar_a = A_t.shape[0] == 1                         # one decay per channel for all n states (SSD)
    zero, one = u.dtype.type(0.0), u.dtype.type(1.0)
    h = _scratch((n, BLOCK), u.dtype)
    h.fill(0)
    a_blk = _scratch((A_t.shape[0], BLOCK), u.dtype)
    _copy_state(a_blk, A_t, c0, w, False)
    D_b, bias_b = D[c0:c0 + w], bias[c0:c0 + w]      # views of the block (module docstring)
    ins, n_in = (u, delta, z), 3 if has_z else 2
    tiles = _scratch((4, 1, tile if cm else 1, BLOCK), u.dtype)  # cm: u, delta, z, y at the tile's steps,
                                                                 # each indexed as a one-sample (b, l, d) array
    dts = _scratch((BLOCK,), u.dtype)
    dtus = _scratch((BLOCK,), u.dtype)
    decay = _scratch((BLOCK,), u.dtype)                 # scalar_a: exp(dt A) of each channel, for all its states
    acc = _scratch((BLOCK,), u.dtype)
    for wi in range(-(-length // tile)):
        m, t0 = _span(wi, tile, length, rev[gi])
        if cm:
            _tiles(ins, n_in, bi, t0, m, c0, w, tiles, False)
        # the tile's (b, l, d) sources and where the block starts in them: the tiles, or the time-major arrays
        su, sd, sz, sy = (tiles[0], tiles[1], tiles[2], tiles[3]) if cm else (u, delta, z, y)
        b2, o2, c2 = (0, t0, 0) if cm else (bi, 0, c0)
        for j in range(m):
            t = t0 + m - 1 - j if rev[gi] else t0 + j
            s = wi * tile + j
            if save and s % chunk == 0:
                _copy_state(h, starts[bi, s // chunk], c0, w, True)
            valid = not has_mask or mask[bi, t] != 0
            u_t, y_t = su[b2, t - o2, c2:c2 + w], sy[b2, t - o2, c2:c2 + w]
            z_t = sz[b2, t - o2, c2:c2 + w] if has_z else u_t
            _step_inputs(sd[b2, t - o2, c2:c2 + w], u_t, bias_b, w, softplus, valid, dts, dtus)
            for i in range(w):
                acc[i] = zero
                if scalar_a:
                    decay[i] = _exp(dts[i] * a_blk[0, i])
            for k in range(n):
                bk, ck = B[bi, t, gi, k], C[bi, t, gi, k]
                for i in range(w):
                    a = decay[i] if scalar_a else _exp(dts[i] * a_blk[k, i])
                    hv = a * h[k, i] + dtus[i] * bk
                    h[k, i] = hv
                    acc[i] += hv * ck
            for i in range(w):
                yv = acc[i] + D_b[i] * u_t[i]
                if has_z:
                    zv = z_t[i]
                    yv *= zv / (one + _exp(-zv))
                y_t[i] = yv if valid else zero
        if cm:
            _tiles((y,), 1, bi, t0, m, c0, w, tiles[3:], True)
    for i in range(w):
        for k in range(n):
            last[bi, c0 + i, k] = h[k, i]


@_kernel()
def scan_fwd(u, delta, A_t, B, C, D, z, bias, mask, rev, softplus, has_z, has_mask, cm, chunk, save,
             y, last, starts, blk0, blk1):
    """Forward of blocks blk0 .. blk1 - 1 (of b * g * nbg, nbg = ceil(d / g / BLOCK) blocks per group). Writes
    y (in u's layout), last (b, d, n) = state after the final step, and with ``save`` the state before each chunk of
    ``chunk`` steps (in scan order) to starts (b, nchunks, n, d)."""
    d, g = D.shape[0], B.shape[2]
    nbg = -(-(d // g) // BLOCK)
    for blk in range(blk0, blk1):
        bi, gi, c0, w = _block(blk, d, g, nbg)
        if w == BLOCK:                                   # a constant width: the compiler unrolls the channel loops
            _fwd_block(u, delta, A_t, B, C, D, z, bias, mask, rev, softplus, has_z, has_mask, cm, chunk, save, y,
                       last, starts, bi, gi, c0, BLOCK)
        else:
            _fwd_block(u, delta, A_t, B, C, D, z, bias, mask, rev, softplus, has_z, has_mask, cm, chunk, save, y,
                       last, starts, bi, gi, c0, w)


@njit(inline="always", **_JIT)
def _bwd_block(u, delta, A_t, B, C, D, z, bias, mask, rev, softplus, has_z, has_mask, cm, chunk, starts, dy, dlast,
               du, ddelta, dz, dB_part, dC_part, dA_part, dD_part, dbias_part, bi, gi, c0, w):
    """``scan_bwd`` of one block: sample bi, group gi, channels c0 .. c0 + w - 1."""
    length, d = B.shape[1], D.shape[0]
    g, n = B.shape[2], B.shape[3]
    nchunks = starts.shape[1]
    per_tile = max(1, TILE // chunk)                      # chunks per tile
    na = A_t.shape[0]
    scalar_a = na == 1                                    # one decay per channel for all n states (SSD)
    zero, one = u.dtype.type(0.0), u.dtype.type(1.0)
    jb = (c0 - gi * (d // g)) // BLOCK
    a_blk = _scratch((na, BLOCK), u.dtype)
    _copy_state(a_blk, A_t, c0, w, False)
    D_b, bias_b, dD_b, dbias_b = D[c0:c0 + w], bias[c0:c0 + w], dD_part[bi, c0:c0 + w], dbias_part[bi, c0:c0 + w]
    ins, n_in = (u, delta, dy, z), 4 if has_z else 3
    outs, n_out = (du, ddelta, dz), 3 if has_z else 2
    tiles = _scratch((7, 1, chunk * per_tile if cm else 1, BLOCK), u.dtype)   # cm: u, delta, dy, z; du, ddelta, dz
    hs = _scratch((chunk + 1, n, BLOCK), u.dtype)       # hs[j]: state before step j of the chunk
    decay = _scratch((chunk, na, BLOCK), u.dtype)
    dts = _scratch((chunk, BLOCK), u.dtype)
    dtus = _scratch((chunk, BLOCK), u.dtype)
    valids = np.empty(chunk, np.bool_)
    dh = _scratch((n, BLOCK), u.dtype)                  # gradient w.r.t. the state, carried backwards
    gdtu = _scratch((BLOCK,), u.dtype)
    gdt = _scratch((BLOCK,), u.dtype)
    acc = _scratch((BLOCK,), u.dtype)
    dyf = _scratch((BLOCK,), u.dtype)
    terms_c = _scratch((BLOCK,), u.dtype)               # per-channel terms of dC_t and dB_t, summed by _sum_block
    terms_b = _scratch((BLOCK,), u.dtype)
    hdh = _scratch((BLOCK,), u.dtype)                   # scalar_a: sum over k of dh_k h_k before the decay
    dA_acc = _scratch((na, BLOCK), u.dtype)
    dA_acc.fill(0)
    for i in range(w):
        for k in range(n):
            dh[k, i] = dlast[bi, c0 + i, k]
    for ci in range(nchunks - 1, -1, -1):
        m, t0 = _span(ci, chunk, length, rev[gi])
        mw, tw0 = _span(ci // per_tile, chunk * per_tile, length, rev[gi])       # the tile holding the chunk
        if cm and (ci == nchunks - 1 or ci % per_tile == per_tile - 1):       # its last chunk: the tile's first
            _tiles(ins, n_in, bi, tw0, mw, c0, w, tiles, False)
        su, sd, sdy, sz = (tiles[0], tiles[1], tiles[2], tiles[3]) if cm else (u, delta, dy, z)  # see scan_fwd
        sdu, sdd, sdz = (tiles[4], tiles[5], tiles[6]) if cm else (du, ddelta, dz)
        b2, o2, c2 = (0, tw0, 0) if cm else (bi, 0, c0)
        _copy_state(hs[0], starts[bi, ci], c0, w, False)
        for j in range(m):                            # recompute decays and states of the chunk
            t = t0 + m - 1 - j if rev[gi] else t0 + j
            valids[j] = not has_mask or mask[bi, t] != 0
            _step_inputs(sd[b2, t - o2, c2:c2 + w], su[b2, t - o2, c2:c2 + w], bias_b, w, softplus, valids[j],
                         dts[j], dtus[j])
            for k in range(n):
                bk = B[bi, t, gi, k]
                ka = 0 if scalar_a else k
                for i in range(w):
                    if k == ka:                       # decays of state k, or (scalar_a) the channel's, at k = 0
                        a = _exp(dts[j, i] * a_blk[ka, i])
                        decay[j, ka, i] = a
                    else:
                        a = decay[j, 0, i]
                    hs[j + 1, k, i] = a * hs[j, k, i] + dtus[j, i] * bk
        for j in range(m - 1, -1, -1):
            t = t0 + m - 1 - j if rev[gi] else t0 + j
            valid = valids[j]
            dy_t, u_t = sdy[b2, t - o2, c2:c2 + w], su[b2, t - o2, c2:c2 + w]
            for i in range(w):                        # output gate and skip term: dyf = d loss / d(C.h + D u)
                dyf[i] = dy_t[i] if valid else zero
                acc[i] = zero
                gdtu[i] = zero
                gdt[i] = zero
                hdh[i] = zero
            if has_z:
                for k in range(n):
                    ck = C[bi, t, gi, k]
                    for i in range(w):
                        acc[i] += ck * hs[j + 1, k, i]
                z_t, dz_t = sz[b2, t - o2, c2:c2 + w], sdz[b2, t - o2, c2:c2 + w]
                for i in range(w):
                    zv = z_t[i]
                    sig = one / (one + _exp(-zv))
                    yfull = acc[i] + D_b[i] * u_t[i]
                    dz_t[i] = dyf[i] * yfull * sig * (one + zv * (one - sig))
                    dyf[i] *= zv * sig
            for i in range(w):
                dD_b[i] += dyf[i] * u_t[i]
            for k in range(n):
                bk, ck = B[bi, t, gi, k], C[bi, t, gi, k]
                if scalar_a:                          # one decay for all states: d(dt A) once, after the sum
                    for i in range(w):
                        dhv = _state_grad(dh[k], dyf, ck, bk, hs[j + 1, k], dtus[j], terms_c, terms_b, gdtu, i)
                        hdh[i] += dhv * hs[j, k, i]
                        dh[k, i] = decay[j, 0, i] * dhv
                else:                                 # d loss / d(dt A_k) at once (no second pass over k)
                    for i in range(w):
                        dhv = _state_grad(dh[k], dyf, ck, bk, hs[j + 1, k], dtus[j], terms_c, terms_b, gdtu, i)
                        _decay_grad(dhv * hs[j, k, i], decay[j, k, i], a_blk[k], dts[j], gdt, dA_acc[k], i)
                        dh[k, i] = decay[j, k, i] * dhv
                for i in range(w, BLOCK):             # a narrower last block: no terms there
                    terms_c[i] = zero
                    terms_b[i] = zero
                dC_part[bi, jb, t, gi, k] = _sum_block(terms_c)
                dB_part[bi, jb, t, gi, k] = _sum_block(terms_b)
            if scalar_a:
                for i in range(w):
                    _decay_grad(hdh[i], decay[j, 0, i], a_blk[0], dts[j], gdt, dA_acc[0], i)
            du_t, ddelta_t = sdu[b2, t - o2, c2:c2 + w], sdd[b2, t - o2, c2:c2 + w]
            delta_t = sd[b2, t - o2, c2:c2 + w]
            for i in range(w):
                du_t[i] = dyf[i] * D_b[i] + gdtu[i] * dts[j, i]
                gd = (gdt[i] + gdtu[i] * u_t[i]) if valid else zero
                if softplus:
                    x = delta_t[i] + bias_b[i]
                    gd = gd / (one + _exp(-x)) if x <= 20.0 else gd
                ddelta_t[i] = gd
                dbias_b[i] += gd
        if cm and ci % per_tile == 0:                 # the tile's last chunk done
            _tiles(outs, n_out, bi, tw0, mw, c0, w, tiles[4:], True)
    for i in range(w):
        for ka in range(na):
            dA_part[bi, ka, c0 + i] = dA_acc[ka, i]


@_kernel()
def scan_bwd(u, delta, A_t, B, C, D, z, bias, mask, rev, softplus, has_z, has_mask, cm, chunk, starts, dy, dlast,
             du, ddelta, dz, dB_part, dC_part, dA_part, dD_part, dbias_part, blk0, blk1):
    """Backward of ``scan_fwd`` for blocks blk0 .. blk1 - 1, given dy (in u's layout) and dlast (b, d, n). Writes du,
    ddelta, dz (in u's layout) and the per-block partial sums dB_part, dC_part (b, nbg, l, g, n) (nbg = blocks per
    group), dA_part (b, n, d), dD_part and dbias_part (b, d); the caller sums the partials."""
    d, g = D.shape[0], B.shape[2]
    nbg = -(-(d // g) // BLOCK)
    for blk in range(blk0, blk1):
        bi, gi, c0, w = _block(blk, d, g, nbg)
        if w == BLOCK:                                   # a constant width (see scan_fwd)
            _bwd_block(u, delta, A_t, B, C, D, z, bias, mask, rev, softplus, has_z, has_mask, cm, chunk, starts, dy,
                       dlast, du, ddelta, dz, dB_part, dC_part, dA_part, dD_part, dbias_part, bi, gi, c0, BLOCK)
        else:
            _bwd_block(u, delta, A_t, B, C, D, z, bias, mask, rev, softplus, has_z, has_mask, cm, chunk, starts, dy,
                       dlast, du, ddelta, dz, dB_part, dC_part, dA_part, dD_part, dbias_part, bi, gi, c0, w)


@_kernel(parallel=True)
def scan_fwd_parallel(args, nblocks, nthreads):
    """``scan_fwd(*args, lo, hi)`` over ``nthreads`` contiguous ranges of blocks [0, nblocks), one per numba thread."""
    for i in prange(nthreads):
        scan_fwd(*args, nblocks * i // nthreads, nblocks * (i + 1) // nthreads)


@_kernel(parallel=True)
def scan_bwd_parallel(args, nblocks, nthreads):
    """``scan_bwd(*args, lo, hi)`` over ``nthreads`` contiguous ranges of blocks [0, nblocks)."""
    for i in prange(nthreads):
        scan_bwd(*args, nblocks * i // nthreads, nblocks * (i + 1) // nthreads)


@njit(inline="always", **_JIT)
def _conv_at(xs, w, bias, mask, offsets, has_mask, bi, t, out):
    """out[i] = bias[i] + sum_j w[j, i] xs[t + offsets[j], i]: the pre-activation at step t of sample bi
    (xs (l, c), out (c,))."""
    length, c = xs.shape
    for i in range(c):
        out[i] = bias[i]
    for j in range(w.shape[0]):
        s = t + offsets[j]
        if 0 <= s < length and (not has_mask or mask[bi, s] != 0):
            for i in range(c):
                out[i] += w[j, i] * xs[s, i]


@njit(inline="always", **_JIT)
def _conv_rows(blk, length):
    """Flat block index -> (sample, first step, end step): blocks of ``CONV_ROWS`` steps of one sample."""
    nr = -(-length // CONV_ROWS)
    bi, t0 = blk // nr, blk % nr * CONV_ROWS
    return bi, t0, min(t0 + CONV_ROWS, length)


@_kernel()
def conv_fwd(x, w, bias, mask, offsets, has_mask, silu, y, blk0, blk1):
    """Forward of the depthwise conv for blocks blk0 .. blk1 - 1 (of b * ceil(l / CONV_ROWS)). x, y (b, l, c)
    contiguous; w (k, c); bias (c,); offsets (k,) int64: output t reads input t + offsets[j] with weight w[j].
    Whole rows of all channels (module docstring: a block of channels was read with gathers)."""
    one = x.dtype.type(1.0)
    for blk in range(blk0, blk1):
        bi, t0, t1 = _conv_rows(blk, x.shape[1])
        for t in range(t0, t1):
            row = y[bi, t]
            _conv_at(x[bi], w, bias, mask, offsets, has_mask, bi, t, row)
            if silu:
                for i in range(row.shape[0]):
                    row[i] = row[i] / (one + _exp(-row[i]))


@_kernel()
def conv_bwd(x, w, bias, mask, offsets, has_mask, silu, dy, dx, dw_part, dbias_part, blk0, blk1):
    """Backward of ``conv_fwd`` for blocks blk0 .. blk1 - 1, given dy (b, l, c). Writes dx (b, l, c) and the
    per-block partial sums dw_part (nblocks, k, c), dbias_part (nblocks, c); the caller sums them. A block first
    takes the gradient w.r.t. the pre-activation (SiLU's recomputed from x) at its steps and the k - 1 around them
    that its input gradient reads."""
    length, c = x.shape[1], x.shape[2]
    k = w.shape[0]
    zero, one = x.dtype.type(0.0), x.dtype.type(1.0)
    reach_back, reach_on = max(0, offsets.max()), max(0, -offsets.min())
    dpre = _scratch((CONV_ROWS + reach_back + reach_on, c), x.dtype)
    for blk in range(blk0, blk1):
        bi, t0, t1 = _conv_rows(blk, length)
        h0, h1 = max(0, t0 - reach_back), min(length, t1 + reach_on)      # dpre rows h0 .. h1 - 1
        xs, dys = x[bi], dy[bi]
        for t in range(h0, h1):
            row = dpre[t - h0]
            if silu:
                _conv_at(xs, w, bias, mask, offsets, has_mask, bi, t, row)
                for i in range(c):
                    sig = one / (one + _exp(-row[i]))
                    row[i] = dys[t, i] * (sig * (one + row[i] * (one - sig)))
            else:
                for i in range(c):
                    row[i] = dys[t, i]
        db, dw = dbias_part[blk], dw_part[blk]
        db[:] = zero
        dw[:, :] = zero
        for t in range(t0, t1):                     # weight and bias sums over the block's steps
            for i in range(c):
                db[i] += dpre[t - h0, i]
            for j in range(k):
                s = t + offsets[j]
                if 0 <= s < length and (not has_mask or mask[bi, s] != 0):
                    for i in range(c):
                        dw[j, i] += dpre[t - h0, i] * xs[s, i]
        for s in range(t0, t1):                     # input gradient: the transposed conv, zero at pads
            row = dx[bi, s]
            row[:] = zero
            if not has_mask or mask[bi, s] != 0:
                for j in range(k):
                    t = s - offsets[j]
                    if 0 <= t < length:
                        for i in range(c):
                            row[i] += w[j, i] * dpre[t - h0, i]


@_kernel(parallel=True)
def conv_fwd_parallel(args, nblocks, nthreads):
    """``conv_fwd(*args, lo, hi)`` over ``nthreads`` contiguous ranges of blocks [0, nblocks)."""
    for i in prange(nthreads):
        conv_fwd(*args, nblocks * i // nthreads, nblocks * (i + 1) // nthreads)


@_kernel(parallel=True)
def conv_bwd_parallel(args, nblocks, nthreads):
    """``conv_bwd(*args, lo, hi)`` over ``nthreads`` contiguous ranges of blocks [0, nblocks)."""
    for i in prange(nthreads):
        conv_bwd(*args, nblocks * i // nthreads, nblocks * (i + 1) // nthreads)
