//! 3x3 depthwise convolution at stride 1 or 2 on AVX-512, read in place.
//!
//! The other paths copy the input first: the channel-blocked path ([`super::blocked`])
//! transposes each group of channels into a pixel-major padded copy and the outputs back,
//! the row paths pad each channel (and at stride 2 split its rows into even and odd
//! columns). Those copies move as many bytes as the layer itself (at stride 2, four times
//! its output), and the AVX2 row kernel computes 8 outputs per FMA. Here each channel's
//! output row is 16 outputs per vector and the input is read where it lies. Output rows
//! go two at a time: they share `3 - S` input rows (two at stride 1, the middle one at
//! stride 2), whose taps are loaded (and shuffled) once and feed both rows' sums, each
//! the bias and three partial sums (one per tap row, three FMAs each) added at the end.
//!
//! * Stride 1, both rows' windows inside the image ([`x86::row_pair_s1`]): each input
//!   row is loaded once, 16 columns a step; the taps of outputs `p..p + 16` are lane
//!   shifts of the vectors of columns `p - 16..`, `p..` and `p + 16..`, the first two
//!   kept from the steps before (three unaligned loads per row and step instead, most of
//!   them across two cache lines: 1.0-1.2x the time).
//! * Stride 2: two loads take the 32 columns from `2 * ox - pl`, one permute picks the
//!   even ones (tap 0), another the odd ones (tap 1), and a lane shift of the even ones
//!   with the 33rd column gives tap 2. A row's vectors start at `0, 16, 32, ..`, its last
//!   one ending at the row's end (overlapping the one before rather than storing a
//!   partial vector); those whose loads all lie inside the row run without masks.
//! * The first and last row pairs (rows outside the image add nothing), and at stride 2
//!   the vectors at a row's ends, mask their loads to the columns inside the row (the
//!   rest read zero: the padding) and their stores; the masks are computed once per layer
//!   ([`Cols`]).
//!
//! * Small stride-1 planes whose output rows are as wide as the input's (at most 192
//!   outputs: MobileNetV2's 7x7 ones) go flat ([`Flat`]): 16 consecutive outputs of
//!   the plane, whatever rows they span, take one masked load per tap (7x7 planes with
//!   960 channels at 1 thread: 23.4 us against 27.8 on the channel-blocked path and 39
//!   by pairs of rows of 7 outputs).
//!
//! The activation (none, Relu, Clip) is a compile-time parameter: no test per vector.
//!
//! Before (stride 2 only): per output row up to four vectors, each vector's load masks
//! computed per row and a test per input row for rows outside the image; `perf` put most
//! of the time in that scalar work. Stride 1 ran the AVX2 row-pair kernel over a padded
//! copy of each channel. After, MobileNetV2's layers at 1 thread (`dw_bench 1 30`, the
//! AVX2 kernels the model ran before, then this one): 112x112 with 32 channels 104 -> 51
//! us, 56x56 / 144 121 -> 78, 28x28 / 192 54 -> 35, 14x14 / 384 29 -> 25, 14x14 / 576
//! 45 -> 38; stride 2 112 -> 56 / 96 139 -> 95, 56 -> 28 / 144 67 -> 39, 28 -> 14 / 192
//! 21 -> 17.
//!
//! Channels run in parallel on the current rayon pool ([`super::per_channel`]).
use crate::activation::Activation;
use crate::conv::Geom2d;

/// Whether this kernel takes the layer: an AVX-512 CPU, a 3x3 window at stride 1 or 2
/// (the same both ways) without dilation, padding of at most 2 before the image, and
/// output rows at least [`MIN_OW`] wide for the stride.
pub(crate) fn applies(g: &Geom2d) -> bool {
    #[cfg(test)]
    if let Some(on) = super::tests::INPLACE.with(|f| f.get()) {
        return on && available() && geometry(g);
    }
    available() && geometry(g) && (g.ow >= MIN_OW[g.sw - 1] || Flat::fits(g))
}

/// The window this kernel computes, whatever the width.
fn geometry(g: &Geom2d) -> bool {
    (g.kh, g.kw, g.dh, g.dw) == (3, 3, 1, 1)
        && g.sh == g.sw
        && (g.sw == 1 || g.sw == 2)
        && g.pt <= 2
        && g.pl <= 2
        && g.ow >= 1
        && Cols::new(g).is_some()
}

/// Narrowest output row taken, at stride 1 and at stride 2 (see [`applies`]). Against
/// the channel-blocked path at 1 thread (`dw_bench 1 20 --only HxCsS`, 384 channels):
/// stride 1 on 10x10 1.14x its time, 12x12 1.0x, 14x14 0.86x; stride 2 to 10x10 1.03x,
/// to 12x12 0.91x, to 14x14 0.78x.
const MIN_OW: [usize; 2] = [13, 11];

fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Where a row's vectors start, which of them load without masks, and the masks of the
/// others.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[derive(Clone, Copy, Debug)]
struct Cols {
    /// Vectors `lo..hi` read only inside the row and store all 16 lanes.
    lo: usize,
    hi: usize,
    /// The others (`0..lo`, then `hi..n`), the first `ne` entries: the vector, the masks
    /// of its three loads per row, the mask of its stores.
    edge: [(usize, [u16; 3], u16); MAX_EDGE],
    ne: usize,
}

/// Vectors of a row with masked loads or stores that the kernel takes: at most two at
/// each end where the padding is at most 2 and the output no wider than the windows
/// that fit (with one more for a ceil-mode output).
const MAX_EDGE: usize = 4;

impl Cols {
    /// `None` where more than [`MAX_EDGE`] vectors of a row would need masks (output
    /// columns far past the image).
    fn new(g: &Geom2d) -> Option<Cols> {
        let n = g.ow.div_ceil(16);
        let (w, ow) = (g.w as isize, g.ow as isize);
        // The step between a vector's loads, the columns they span.
        let (step, span) = if g.sw == 1 { (1, 18) } else { (16, 33) };
        let start = |k: usize| (g.sw * Cols::at(g.ow, k)) as isize - g.pl as isize;
        let inside = |k: usize| g.ow >= 16 && start(k) >= 0 && start(k) + span <= w;
        let lo = (0..n).find(|&k| inside(k)).unwrap_or(n);
        let hi = (lo..n).find(|&k| !inside(k)).unwrap_or(n);
        let mut edge = [(0, [0; 3], 0); MAX_EDGE];
        let mut ne = 0;
        for k in (0..lo).chain(hi..n) {
            let s = start(k);
            let mut m = [0, 1, 2].map(|j| lane_range16(-(s + step * j), w - (s + step * j)));
            if g.sw == 2 {
                // Only the 33rd column of the third load.
                m[2] &= 1;
            }
            let st = lane_range16(0, ow - Cols::at(g.ow, k) as isize);
            *edge.get_mut(ne)? = (k, m, st);
            ne += 1;
        }
        Some(Cols { lo, hi, edge, ne })
    }

    /// The first output column of vector `k`: the last vector ends at the row's end.
    #[inline(always)]
    fn at(ow: usize, k: usize) -> usize {
        if ow >= 16 {
            (16 * k).min(ow - 16)
        } else {
            0
        }
    }
}

/// The lanes `lo..hi` of 16 (clamped), as a bit mask.
fn lane_range16(lo: isize, hi: isize) -> u16 {
    let (lo, hi) = (lo.clamp(0, 16), hi.clamp(0, 16));
    if hi <= lo {
        0
    } else {
        (((1u32 << hi) - 1) & !((1u32 << lo) - 1)) as u16
    }
}

/// A small stride-1 plane whose output rows are as wide as its input rows, computed as
/// one flat array: output `o` (row `o / ow`, column `o % ow`) reads input `o + off[t]`
/// for tap `t`, 16 consecutive outputs one load per tap whatever the rows they span, the
/// lanes whose tap falls outside the image (another row's column, a row above or below)
/// masked off. MobileNetV2's 7x7 planes: 4 vectors of 9 taps per channel, where rows of 7
/// outputs take 7 vectors.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[derive(Clone, Copy, Debug)]
struct Flat {
    /// Vectors per plane.
    n: usize,
    /// Per vector, the lanes each tap loads (`ky * 3 + kx`) and the lanes stored.
    m: [([u16; 9], u16); MAX_FLAT],
    /// Per tap, the input's offset from the output's index.
    off: [isize; 9],
}

/// Vectors of the largest plane computed flat (192 outputs). MobileNetV2's 7x7 planes
/// flat took 0.80x the time by pairs of rows in the model (`nodes_ab.py 6 2`), its 14x14
/// ones (13 vectors) 1.0-1.08x.
const MAX_FLAT: usize = 12;

impl Flat {
    /// Whether [`Flat::new`] takes the layer (without building its masks).
    fn fits(g: &Geom2d) -> bool {
        let np = g.oh.saturating_mul(g.ow);
        g.sw == 1 && g.ow == g.w && np > 0 && np <= 16 * MAX_FLAT
    }

    /// `None` unless stride 1 with output rows as wide as the input's and at most
    /// [`MAX_FLAT`] vectors of outputs.
    fn new(g: &Geom2d) -> Option<Flat> {
        if !Flat::fits(g) {
            return None;
        }
        let np = g.oh * g.ow;
        let n = np.div_ceil(16);
        let (pt, pl) = (g.pt as isize, g.pl as isize);
        let off = std::array::from_fn(|t| {
            let (ky, kx) = ((t / 3) as isize, (t % 3) as isize);
            (ky - pt) * g.w as isize + kx - pl
        });
        let mut m = [([0u16; 9], 0u16); MAX_FLAT];
        // Output `(oy, ox)` of lane `j`, walked without a division per lane: this runs
        // on every call.
        let (mut oy, mut ox) = (0isize, 0isize);
        for (v, (taps, st)) in m.iter_mut().enumerate().take(n) {
            // Per lane, which tap rows and which tap columns fall inside the image.
            let (mut rows, mut cols) = ([0u16; 3], [0u16; 3]);
            for j in 0..(np - 16 * v).min(16) {
                *st |= 1 << j;
                for d in 0..3 {
                    if (0..g.h as isize).contains(&(oy - pt + d as isize)) {
                        rows[d] |= 1 << j;
                    }
                    if (0..g.w as isize).contains(&(ox - pl + d as isize)) {
                        cols[d] |= 1 << j;
                    }
                }
                ox += 1;
                if ox == g.ow as isize {
                    (oy, ox) = (oy + 1, 0);
                }
            }
            *taps = std::array::from_fn(|t| rows[t / 3] & cols[t % 3]);
        }
        Some(Flat { n, m, off })
    }
}

/// How a layer's planes are walked: by pairs of rows, or flat.
#[derive(Clone, Copy, Debug)]
// Built once per call on the stack and lent to the channels: boxing the larger variant
// would allocate on every call.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[allow(clippy::large_enum_variant)]
enum Plan {
    Rows(Cols),
    Flat(Flat),
}

/// `out = act(depthwise3x3(x, w) + bias)` over all channels. The caller has checked the
/// geometry against the buffers and [`applies`].
pub(crate) fn run(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    g: &Geom2d,
    act: Activation,
    out: &mut [f32],
) {
    let plan = match (Flat::new(g), Cols::new(g)) {
        (Some(f), _) => Plan::Flat(f),
        (None, Some(c)) => Plan::Rows(c),
        (None, None) => unreachable!("`applies` checked the columns"),
    };
    super::per_channel(x, g, out, |ci, xc, oc| {
        let mut wc = [0.0f32; 9];
        wc.copy_from_slice(&w[ci * 9..ci * 9 + 9]);
        let b = bias.map_or(0.0, |b| b[ci]);
        channel(xc, &wc, b, g, &plan, act, oc);
    });
}

/// One channel: `x` is its `h x w` plane, `out` its `oh x ow` plane.
fn channel(
    x: &[f32],
    w: &[f32; 9],
    bias: f32,
    g: &Geom2d,
    plan: &Plan,
    act: Activation,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `applies` found AVX-512F; the caller checked the plane sizes, `plan`
        // is `g`'s.
        unsafe {
            // The activation in registers as a constant (0 none, 1 Relu, 2 Clip): no test
            // per vector.
            macro_rules! go {
                ($f:ident $(::<$s:literal>)?, $p:expr) => {
                    match act.in_tile() {
                        (true, _, _) => x86::$f::<$($s,)? 1>(x, w, bias, g, $p, act, out),
                        (_, Some(_), _) => x86::$f::<$($s,)? 2>(x, w, bias, g, $p, act, out),
                        _ => x86::$f::<$($s,)? 0>(x, w, bias, g, $p, act, out),
                    }
                };
            }
            match plan {
                Plan::Flat(f) => go!(flat, f),
                Plan::Rows(c) if g.sw == 1 => go!(channel::<1>, c),
                Plan::Rows(c) => go!(channel::<2>, c),
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (x, w, bias, g, plan, act, out);
        unreachable!("inplace3x3 runs only where `applies` found AVX-512")
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{lane_range16, Cols, Flat};
    use crate::activation::Activation;
    use crate::conv::Geom2d;
    use std::arch::x86_64::*;

    /// The window's constants: tap weights, bias, permute indices, activation bounds.
    struct Consts {
        w: [__m512; 9],
        bias: __m512,
        even: __m512i,
        odd: __m512i,
        lo: __m512,
        hi: __m512,
    }

    impl Consts {
        /// # Safety
        /// AVX-512F.
        #[inline(always)]
        unsafe fn new(wt: &[f32; 9], bias: f32, act: Activation) -> Consts {
            let (lo, hi) = act.in_tile().1.unwrap_or((0.0, 0.0));
            Consts {
                // Spelled out: `map` or `from_fn` calls a closure that is not compiled
                // for AVX-512 (a call per weight, 30% of a 7x7 layer's time).
                w: [
                    _mm512_set1_ps(wt[0]),
                    _mm512_set1_ps(wt[1]),
                    _mm512_set1_ps(wt[2]),
                    _mm512_set1_ps(wt[3]),
                    _mm512_set1_ps(wt[4]),
                    _mm512_set1_ps(wt[5]),
                    _mm512_set1_ps(wt[6]),
                    _mm512_set1_ps(wt[7]),
                    _mm512_set1_ps(wt[8]),
                ],
                bias: _mm512_set1_ps(bias),
                even: _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30),
                odd: _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31),
                lo: _mm512_set1_ps(lo),
                hi: _mm512_set1_ps(hi),
            }
        }
    }

    /// A plane computed flat ([`Flat`]): per vector of 16 outputs, one masked load and
    /// one FMA per tap.
    ///
    /// # Safety
    /// AVX-512F; `x` holds `g.h * g.w` values and `out` `g.oh * g.ow`; `f` is
    /// `Flat::new(g)`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn flat<const ACT: u8>(
        x: &[f32],
        wt: &[f32; 9],
        bias: f32,
        g: &Geom2d,
        f: &Flat,
        act: Activation,
        out: &mut [f32],
    ) {
        let k = Consts::new(wt, bias, act);
        let z = _mm512_setzero_ps();
        let (xp, op) = (x.as_ptr(), out.as_mut_ptr());
        for (v, &(m, st)) in f.m.iter().enumerate().take(f.n) {
            let o = 16 * v as isize;
            let mut a = [k.bias, z, z];
            // Spelled out tap by tap: the weights stay in registers. Masked-off lanes are
            // not read (their addresses may lie outside the plane).
            macro_rules! tap {
                ($t:literal) => {
                    a[$t / 3] = _mm512_fmadd_ps(
                        _mm512_maskz_loadu_ps(m[$t], xp.wrapping_offset(o + f.off[$t])),
                        k.w[$t],
                        a[$t / 3],
                    );
                };
            }
            tap!(0);
            tap!(1);
            tap!(2);
            tap!(3);
            tap!(4);
            tap!(5);
            tap!(6);
            tap!(7);
            tap!(8);
            _mm512_mask_storeu_ps(op.offset(o), st, activate::<ACT>(sum(a), &k));
        }
        if act.in_tile().2 {
            act.apply_slice(&mut out[..g.oh * g.ow]);
        }
    }

    /// Input rows a pair of output rows reads at stride `S` (rows `S * j + ky` for
    /// output row `j` of the pair).
    const fn rows_of_pair(s: usize) -> usize {
        s + 3
    }

    /// # Safety
    /// AVX-512F; `x` holds `g.h * g.w` values and `out` `g.oh * g.ow`; `g.sw == S`,
    /// `cols` is `Cols::new(g)`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn channel<const S: usize, const ACT: u8>(
        x: &[f32],
        wt: &[f32; 9],
        bias: f32,
        g: &Geom2d,
        cols: &Cols,
        act: Activation,
        out: &mut [f32],
    ) {
        let post = act.in_tile().2;
        let k = Consts::new(wt, bias, act);
        let (h, w, ow) = (g.h as isize, g.w as isize, g.ow);
        let nr = rows_of_pair(S);
        let mut oy = 0;
        while oy < g.oh {
            let two = oy + 1 < g.oh;
            let iy0 = (S * oy) as isize - g.pt as isize;
            // The pair's input rows, null where outside the image (they read zero).
            let rows: [*const f32; 5] = std::array::from_fn(|r| {
                let iy = iy0 + r as isize;
                if r >= nr || iy < 0 || iy >= h {
                    std::ptr::null()
                } else {
                    x.as_ptr().wrapping_offset(iy * w)
                }
            });
            let o0 = out.as_mut_ptr().add(oy * ow);
            // The second row's stores go to the first's when there is none (the first's
            // are stored last, over them).
            let o1 = if two { o0.add(ow) } else { o0 };
            let inside = two && iy0 >= 0 && iy0 + nr as isize <= h;
            // (Not a closure: it would not inline the intrinsics.)
            macro_rules! store {
                ($ox:expr, $st:expr, $ab:expr) => {{
                    let (a, b) = $ab;
                    _mm512_mask_storeu_ps(o1.add($ox), $st, b);
                    _mm512_mask_storeu_ps(o0.add($ox), $st, a);
                }};
            }
            if S == 1 && inside {
                match g.pl {
                    0 => row_pair_s1::<0, ACT>(&rows, g.w, ow, &k, o0),
                    1 => row_pair_s1::<1, ACT>(&rows, g.w, ow, &k, o0),
                    _ => row_pair_s1::<2, ACT>(&rows, g.w, ow, &k, o0),
                }
            } else {
                // Every vector of the pair: `$nulls` where rows lie outside the image
                // (each vector tests them).
                macro_rules! vectors {
                    ($nulls:literal) => {{
                        for &(kk, m, st) in &cols.edge[..cols.ne] {
                            let ox = Cols::at(ow, kk);
                            let s = (S * ox) as isize - g.pl as isize;
                            store!(ox, st, pair::<S, ACT, true, $nulls>(&rows, s, m, &k));
                        }
                        for kk in cols.lo..cols.hi {
                            let ox = Cols::at(ow, kk);
                            let s = (S * ox) as isize - g.pl as isize;
                            store!(ox, !0, pair::<S, ACT, false, $nulls>(&rows, s, [!0; 3], &k));
                        }
                    }};
                }
                if inside {
                    vectors!(false)
                } else {
                    vectors!(true)
                }
            }
            let done = if two { 2 } else { 1 };
            if post {
                act.apply_slice(&mut out[oy * ow..(oy + done) * ow]);
            }
            oy += done;
        }
    }

    /// Stride 1: two output rows from `o` (`ow` wide, the second right after the first),
    /// input rows `rows[0..4]` (`w` wide), left padding `PL`, activation `ACT` (0 none,
    /// 1 Relu, 2 Clip). Each row is read once, 16 columns a step: its taps for the
    /// outputs from column `p` are lane shifts of the vectors of columns `p - 16..`, `p..`
    /// and `p + 16..`, the first two kept from the steps before. Columns outside the row
    /// read zero (the first step's previous vector, masked loads at the row's end); the
    /// steps whose loads and stores all fall inside run without masks or tests.
    ///
    /// # Safety
    /// AVX-512F (inlined into [`channel`]); the rows hold `w` values, `o` two rows.
    #[inline(always)]
    unsafe fn row_pair_s1<const PL: usize, const ACT: u8>(
        rows: &[*const f32; 5],
        w: usize,
        ow: usize,
        k: &Consts,
        o: *mut f32,
    ) {
        let z = _mm512_setzero_ps();
        // Per input row: the vectors of columns `p - 16..` and `p..`.
        let mut prev = [z; 4];
        let m0 = lane_range16(0, w as isize);
        let mut cur: [__m512; 4] = [
            _mm512_maskz_loadu_ps(m0, rows[0]),
            _mm512_maskz_loadu_ps(m0, rows[1]),
            _mm512_maskz_loadu_ps(m0, rows[2]),
            _mm512_maskz_loadu_ps(m0, rows[3]),
        ];
        // One step: `next` the vectors of columns `p + 16..`.
        macro_rules! step {
            ($p:expr, $next:expr, $st:expr) => {{
                let p = $p;
                let next: [__m512; 4] = $next;
                let mut a = [k.bias, z, z];
                let mut b = [k.bias, z, z];
                // Input row `r`'s taps into both output rows' sums.
                macro_rules! row {
                    ($r:literal) => {
                        let t = shifted::<PL>(prev[$r], cur[$r], next[$r]);
                        accumulate::<1>($r, t, k, &mut a, &mut b);
                    };
                }
                row!(0);
                row!(1);
                row!(2);
                row!(3);
                prev = cur;
                cur = next;
                let (ya, yb) = (activate::<ACT>(sum(a), k), activate::<ACT>(sum(b), k));
                match $st {
                    None => {
                        _mm512_storeu_ps(o.add(p), ya);
                        _mm512_storeu_ps(o.add(ow + p), yb);
                    }
                    Some(m) => {
                        _mm512_mask_storeu_ps(o.add(p), m, ya);
                        _mm512_mask_storeu_ps(o.add(ow + p), m, yb);
                    }
                }
            }};
        }
        let mut p = 0;
        // Steps whose next vectors lie inside the rows and whose stores are whole.
        while p + 32 <= w && p + 16 <= ow {
            let q = p as isize + 16;
            step!(
                p,
                [
                    _mm512_loadu_ps(rows[0].offset(q)),
                    _mm512_loadu_ps(rows[1].offset(q)),
                    _mm512_loadu_ps(rows[2].offset(q)),
                    _mm512_loadu_ps(rows[3].offset(q)),
                ],
                None::<__mmask16>
            );
            p += 16;
        }
        while p < ow {
            let q = p as isize + 16;
            // The next vectors' lanes inside the rows (none: no load, see `pair`).
            let mn = lane_range16(0, w as isize - q);
            let next = if mn == 0 {
                [z; 4]
            } else {
                [
                    _mm512_maskz_loadu_ps(mn, rows[0].offset(q)),
                    _mm512_maskz_loadu_ps(mn, rows[1].offset(q)),
                    _mm512_maskz_loadu_ps(mn, rows[2].offset(q)),
                    _mm512_maskz_loadu_ps(mn, rows[3].offset(q)),
                ]
            };
            step!(p, next, Some(lane_range16(0, (ow - p) as isize)));
            p += 16;
        }
    }

    /// Relu / Clip in the register (`ACT`: 0 none, 1 Relu, 2 Clip).
    #[inline(always)]
    unsafe fn activate<const ACT: u8>(y: __m512, k: &Consts) -> __m512 {
        match ACT {
            // maxps returns its second operand for NaN (and -0): +0.
            1 => _mm512_max_ps(y, _mm512_setzero_ps()),
            // Bounds first: a NaN in the second operand comes through.
            2 => _mm512_min_ps(k.hi, _mm512_max_ps(k.lo, y)),
            _ => y,
        }
    }

    /// The three taps, columns `p - PL + j` for `j = 0, 1, 2`, from the vectors of columns
    /// `p - 16..` (`a`), `p..` (`b`) and `p + 16..` (`c`).
    #[inline(always)]
    unsafe fn shifted<const PL: usize>(a: __m512, b: __m512, c: __m512) -> [__m512; 3] {
        let (a, b, c) = (
            _mm512_castps_si512(a),
            _mm512_castps_si512(b),
            _mm512_castps_si512(c),
        );
        let t = match PL {
            0 => [
                b,
                _mm512_alignr_epi32(c, b, 1),
                _mm512_alignr_epi32(c, b, 2),
            ],
            1 => [
                _mm512_alignr_epi32(b, a, 15),
                b,
                _mm512_alignr_epi32(c, b, 1),
            ],
            _ => [
                _mm512_alignr_epi32(b, a, 14),
                _mm512_alignr_epi32(b, a, 15),
                b,
            ],
        };
        [
            _mm512_castsi512_ps(t[0]),
            _mm512_castsi512_ps(t[1]),
            _mm512_castsi512_ps(t[2]),
        ]
    }

    /// The three partial sums of an output vector added.
    #[inline(always)]
    unsafe fn sum(p: [__m512; 3]) -> __m512 {
        _mm512_add_ps(_mm512_add_ps(p[0], p[1]), p[2])
    }

    /// Adds one input row's three taps `t` to the sums of the pair's output rows that read
    /// it: row `r` of the pair's inputs is tap row `r` of the first output row and
    /// `r - S` of the second.
    #[inline(always)]
    unsafe fn accumulate<const S: usize>(
        r: usize,
        t: [__m512; 3],
        k: &Consts,
        a: &mut [__m512; 3],
        b: &mut [__m512; 3],
    ) {
        if r < 3 {
            let w = &k.w[3 * r..3 * r + 3];
            let a = &mut a[r];
            *a = _mm512_fmadd_ps(t[0], w[0], *a);
            *a = _mm512_fmadd_ps(t[1], w[1], *a);
            *a = _mm512_fmadd_ps(t[2], w[2], *a);
        }
        if r >= S && r - S < 3 {
            let w = &k.w[3 * (r - S)..3 * (r - S) + 3];
            let b = &mut b[r - S];
            *b = _mm512_fmadd_ps(t[0], w[0], *b);
            *b = _mm512_fmadd_ps(t[1], w[1], *b);
            *b = _mm512_fmadd_ps(t[2], w[2], *b);
        }
    }

    /// The pair's two output vectors whose windows start at column `s` of every row.
    /// `MASKED`: each row's three loads take the lanes of `m` (the columns inside the row;
    /// masked-off lanes are not read, and the pointers may lie outside the row);
    /// otherwise they read all 16. `NULLS`: null rows (outside the image) add nothing.
    ///
    /// # Safety
    /// AVX-512F (inlined into [`channel`]); the first `S + 3` rows (the non-null ones
    /// with `NULLS`) hold the columns the loads read.
    #[inline(always)]
    unsafe fn pair<const S: usize, const ACT: u8, const MASKED: bool, const NULLS: bool>(
        rows: &[*const f32; 5],
        s: isize,
        m: [__mmask16; 3],
        k: &Consts,
    ) -> (__m512, __m512) {
        // One sum per tap row, added at the end: three short chains rather than one of
        // nine dependent FMAs.
        let z = _mm512_setzero_ps();
        let (mut a, mut b) = ([k.bias, z, z], [k.bias, z, z]);
        // Spelled out row by row (a loop over the rows stayed a loop, the weights read
        // from memory): `accumulate`'s tests on `r` fold away.
        macro_rules! row {
            ($r:literal) => {
                // Rows outside the image add nothing. (Not loads with no lanes: at a
                // pointer near null they take the CPU's slow path for masked-off faults,
                // about 800 us for 960 7x7 planes.)
                if $r < rows_of_pair(S) && !(NULLS && rows[$r].is_null()) {
                    let t = taps::<S, MASKED>(rows[$r], s, m, k);
                    accumulate::<S>($r, t, k, &mut a, &mut b);
                }
            };
        }
        row!(0);
        row!(1);
        row!(2);
        row!(3);
        row!(4);
        (activate::<ACT>(sum(a), k), activate::<ACT>(sum(b), k))
    }

    /// The three taps of one row for 16 outputs whose windows start at column `s`.
    ///
    /// # Safety
    /// As [`pair`].
    #[inline(always)]
    unsafe fn taps<const S: usize, const MASKED: bool>(
        row: *const f32,
        s: isize,
        m: [__mmask16; 3],
        k: &Consts,
    ) -> [__m512; 3] {
        let step = if S == 1 { 1 } else { 16 };
        // (Not closures: they would not inline the intrinsics.)
        macro_rules! ld {
            ($j:literal) => {{
                let p = row.wrapping_offset(s + step * $j);
                if MASKED {
                    _mm512_maskz_loadu_ps(m[$j], p)
                } else {
                    _mm512_loadu_ps(p)
                }
            }};
        }
        if S == 1 {
            [ld!(0), ld!(1), ld!(2)]
        } else {
            let e = if MASKED {
                _mm512_maskz_loadu_ps(m[2], row.wrapping_offset(s + 32))
            } else {
                _mm512_castps128_ps512(_mm_load_ss(row.offset(s + 32)))
            };
            split2(ld!(0), ld!(1), e, k)
        }
    }

    /// The three stride-2 taps of 16 outputs from the row's 32 columns `l`, `h` from
    /// their first window's start and the 33rd in lane 0 of `e`.
    #[inline(always)]
    unsafe fn split2(l: __m512, h: __m512, e: __m512, k: &Consts) -> [__m512; 3] {
        let t0 = _mm512_permutex2var_ps(l, k.even, h);
        let t1 = _mm512_permutex2var_ps(l, k.odd, h);
        // Lanes 1..16 of t0, then lane 0 of e: columns s + 2j + 2.
        let t2 = _mm512_castsi512_ps(_mm512_alignr_epi32(
            _mm512_castps_si512(e),
            _mm512_castps_si512(t0),
            1,
        ));
        [t0, t1, t2]
    }
}
