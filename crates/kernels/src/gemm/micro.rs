//! Microkernels: `tile[MR x NR] = sum over k of a[k][0..MR] (x) b[k][0..NR]`.
//!
//! `a` is a packed `A` panel (`kc` groups of `MR`), `b` a packed `B` panel (`kc` groups of
//! `NR`); the tile is row-major with leading dimension `NR`. The accumulators live in
//! registers for the whole `kc` loop: `A` values are broadcast, `B` rows are vectors.
//! Each kernel is compiled for its instruction set with `#[target_feature]` and chosen at
//! run time by [`super::Kernel::detect`].

/// Where and how a microkernel writes its tile: `C[i][j]` (`i < mv`, `j < nv`) at
/// `c + i * ldc + j` becomes
/// `clamp(alpha * acc + add_old * C + bias_row[i] + bias_col[j] + res[i * ldr + j])`, the
/// bias, residual and clamp only when `last` (the final `K` block). Null pointers mean
/// "absent". `relu` maps NaN and -0 to +0 (as [`crate::activation::Activation::Relu`]);
/// `clamp` keeps NaN (as `Clip`). Other activations are applied by the caller afterwards.
#[derive(Clone, Copy, Debug)]
pub struct TileOut {
    pub c: *mut f32,
    pub ldc: usize,
    pub mv: usize,
    pub nv: usize,
    pub alpha: f32,
    pub add_old: f32,
    pub last: bool,
    pub bias_row: *const f32,
    pub bias_col: *const f32,
    pub res: *const f32,
    pub ldr: usize,
    pub relu: bool,
    pub clamp: Option<(f32, f32)>,
    /// `A` to bring into L2 while the tile runs, one cache line per step of `k` from here
    /// (the next row panel, when this one's came from memory); null: none. Only
    /// prefetched, never read; the AVX-512 kernels use it.
    pub pf_a: *const f32,
    /// How far past a step's `B` row the AVX-512 kernels prefetch, in floats; 0:
    /// [`x86::B_AHEAD`] rows down (`B_AHEAD * ldb`). A run of tiles along `N` over an
    /// image read in place gives the next tile's columns of the same row (see
    /// `Block::run_far`).
    pub pf_b: usize,
}

impl TileOut {
    /// An `mv x nv` tile at `c` (rows `ldc` apart) that takes the sums alone: no bias,
    /// residual or activation, the old values overwritten.
    pub fn plain(c: *mut f32, ldc: usize, mv: usize, nv: usize, last: bool) -> TileOut {
        TileOut {
            c,
            ldc,
            mv,
            nv,
            alpha: 1.0,
            add_old: 0.0,
            last,
            bias_row: std::ptr::null(),
            bias_col: std::ptr::null(),
            res: std::ptr::null(),
            ldr: 0,
            relu: false,
            clamp: None,
            pf_a: std::ptr::null(),
            pf_b: 0,
        }
    }
}

/// Signature shared by all microkernels.
///
/// # Safety
/// `a` must hold `kc * MR` floats; `b` holds `kc` rows of `NR` floats, `ldb` apart; every pointer in `out` must be valid for
/// the `mv x nv` tile it describes; the CPU must have the kernel's instruction set.
pub type MicroFn = unsafe fn(kc: usize, a: *const f32, b: *const f32, ldb: usize, out: &TileOut);

/// Stores an `MR x NR` accumulator array (row-major, leading dimension `nr`) per `out`.
///
/// # Safety
/// As [`MicroFn`].
#[inline(always)]
pub unsafe fn store_acc(acc: &[f32], nr: usize, o: &TileOut) {
    for i in 0..o.mv {
        let dst = std::slice::from_raw_parts_mut(o.c.add(i * o.ldc), o.nv);
        let src = &acc[i * nr..i * nr + o.nv];
        if o.add_old == 0.0 {
            dst.iter_mut().zip(src).for_each(|(d, s)| *d = o.alpha * s);
        } else {
            dst.iter_mut()
                .zip(src)
                .for_each(|(d, s)| *d = o.alpha * s + o.add_old * *d);
        }
        if !o.last {
            continue;
        }
        if !o.bias_row.is_null() {
            let b = *o.bias_row.add(i);
            dst.iter_mut().for_each(|d| *d += b);
        }
        if !o.bias_col.is_null() {
            let b = std::slice::from_raw_parts(o.bias_col, o.nv);
            dst.iter_mut().zip(b).for_each(|(d, b)| *d += b);
        }
        if !o.res.is_null() {
            let r = std::slice::from_raw_parts(o.res.add(i * o.ldr), o.nv);
            dst.iter_mut().zip(r).for_each(|(d, r)| *d += r);
        }
        if o.relu {
            dst.iter_mut()
                .for_each(|d| *d = if *d > 0.0 { *d } else { 0.0 });
        }
        if let Some((lo, hi)) = o.clamp {
            dst.iter_mut().for_each(|d| {
                *d = if *d < lo {
                    lo
                } else if *d > hi {
                    hi
                } else {
                    *d
                }
            });
        }
    }
}

/// Portable kernel (any CPU): 4 x 16 with plain arrays the compiler vectorizes.
pub const GENERIC_MR: usize = 4;
pub const GENERIC_NR: usize = 16;

/// # Safety
/// See [`MicroFn`].
pub unsafe fn generic(kc: usize, a: *const f32, b: *const f32, ldb: usize, out: &TileOut) {
    const MR: usize = GENERIC_MR;
    const NR: usize = GENERIC_NR;
    let a = std::slice::from_raw_parts(a, kc * MR);
    let mut acc = [[0.0f32; NR]; MR];
    for (p, ap) in a.chunks_exact(MR).enumerate() {
        let bp = std::slice::from_raw_parts(b.add(p * ldb), NR);
        for i in 0..MR {
            let ai = ap[i];
            for j in 0..NR {
                acc[i][j] += ai * bp[j];
            }
        }
    }
    store_acc(acc.as_flattened(), NR, out);
}

/// The aarch64 kernel: NEON is part of every ARMv8-A core, so it runs on all of them.
#[cfg(target_arch = "aarch64")]
pub mod arm {
    use std::arch::aarch64::*;

    pub const NEON_MR: usize = 6;
    pub const NEON_NR: usize = 16;

    /// NEON: 6 x 16, twenty-four 4-lane accumulators. Per step of `k` four vectors of
    /// the `B` row and the panel's six `A` values (one 4-lane and one 2-lane load), each
    /// `A` value multiplied in by lane (`fmla v.4s, v.4s, v.s[i]`): 24 `fmla` for 6 loads,
    /// 30 of the 32 vector registers live. The tile goes through [`super::store_acc`].
    ///
    /// # Safety
    /// See [`super::MicroFn`]; needs NEON.
    #[target_feature(enable = "neon")]
    pub unsafe fn neon(kc: usize, a: *const f32, b: *const f32, ldb: usize, o: &super::TileOut) {
        let z = vdupq_n_f32(0.0);
        let mut c = [[z; 4]; NEON_MR];
        let (mut a, mut b) = (a, b);
        for _ in 0..kc {
            // SAFETY: `a` holds `kc` groups of 6 values and `b` `kc` rows of 16, `ldb`
            // apart (the caller's contract); the pointers move on one group / row per step.
            let (bv, lo, hi) = unsafe {
                (
                    [
                        vld1q_f32(b),
                        vld1q_f32(b.add(4)),
                        vld1q_f32(b.add(8)),
                        vld1q_f32(b.add(12)),
                    ],
                    vld1q_f32(a),
                    vld1_f32(a.add(4)),
                )
            };
            macro_rules! row {
                ($i:expr, $f:ident, $v:expr, $l:expr) => {
                    for (cv, bj) in c[$i].iter_mut().zip(bv) {
                        *cv = $f::<$l>(*cv, bj, $v);
                    }
                };
            }
            row!(0, vfmaq_laneq_f32, lo, 0);
            row!(1, vfmaq_laneq_f32, lo, 1);
            row!(2, vfmaq_laneq_f32, lo, 2);
            row!(3, vfmaq_laneq_f32, lo, 3);
            row!(4, vfmaq_lane_f32, hi, 0);
            row!(5, vfmaq_lane_f32, hi, 1);
            // After the last step these point past the panels (`b` by up to a whole row
            // of an image read in place), so they move without `add`'s in-bounds promise.
            a = a.wrapping_add(NEON_MR);
            b = b.wrapping_add(ldb);
        }
        let mut tile = [0.0f32; NEON_MR * NEON_NR];
        for (i, ci) in c.iter().enumerate() {
            for (j, v) in ci.iter().enumerate() {
                // SAFETY: `tile` holds 6 rows of 16; this is row `i`, lanes `4j..4j + 4`.
                unsafe { vst1q_f32(tile.as_mut_ptr().add(i * NEON_NR + 4 * j), *v) };
            }
        }
        // SAFETY: `o` describes a tile inside C (the caller's contract).
        unsafe { super::store_acc(&tile, NEON_NR, o) };
    }
}

#[cfg(target_arch = "x86_64")]
pub mod x86 {
    use std::arch::x86_64::*;

    pub const AVX2_MR: usize = 6;
    pub const AVX2_NR: usize = 16;

    /// AVX2 + FMA: 6 x 16, twelve ymm accumulators.
    ///
    /// # Safety
    /// See [`super::MicroFn`]; needs AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn avx2(kc: usize, a: *const f32, b: *const f32, ldb: usize, o: &super::TileOut) {
        avx2_part::<AVX2_MR, 2>(kc, a, b, ldb, o)
    }

    /// AVX2 + FMA for the first `R` rows (of [`AVX2_MR`]) and the first `8 * V` columns
    /// (of 16) of a tile, the panels keeping their strides; `R = 6, V = 2` is [`avx2`].
    /// As [`avx512_part`]: a fused residual's rows prefetched during the first steps of
    /// `k`, two steps per loop iteration, and the epilogue in registers for a tile of full
    /// width (78% of the FMA peak at kc = 64 and 90% at kc = 256 on Zen 3, against 48% and
    /// 78% with the epilogue through a stack array). Unlike the AVX-512 kernel it does not
    /// prefetch `B`: on Zen 3 (`examples/pw_bench.rs`, 2 threads) that took 0.87-1.0x the
    /// time on N = 49 and 196 products but 0.99-1.07x on N = 3136 and 1.3-1.4x on N = 1024,
    /// whose rows 4 KiB apart share one set of the L1.
    ///
    /// # Safety
    /// As [`avx2`], with `o.mv <= R` and `o.nv <= 8 * V`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn avx2_part<const R: usize, const V: usize>(
        kc: usize,
        a: *const f32,
        b: *const f32,
        ldb: usize,
        o: &super::TileOut,
    ) {
        let mut c = [[_mm256_setzero_ps(); V]; R];
        let (mut a, mut b) = (a, b);
        let res = if o.last { o.res } else { std::ptr::null() };
        let lead = if res.is_null() { 0 } else { kc.min(o.mv) };
        macro_rules! step {
            () => {{
                let mut bv = [_mm256_setzero_ps(); V];
                for (v, x) in bv.iter_mut().enumerate() {
                    *x = _mm256_loadu_ps(b.add(8 * v));
                }
                for (i, ci) in c.iter_mut().enumerate() {
                    let ai = _mm256_broadcast_ss(&*a.add(i));
                    for (cv, x) in ci.iter_mut().zip(bv) {
                        *cv = _mm256_fmadd_ps(ai, x, *cv);
                    }
                }
                a = a.wrapping_add(AVX2_MR);
                b = b.wrapping_add(ldb);
            }};
        }
        let mut p = 0;
        while p < lead {
            let rp = res.add(p * o.ldr) as *const i8;
            _mm_prefetch::<_MM_HINT_T0>(rp);
            _mm_prefetch::<_MM_HINT_T0>(rp.wrapping_add(32 * V - 1));
            step!();
            p += 1;
        }
        while p + 2 <= kc {
            step!();
            step!();
            p += 2;
        }
        while p < kc {
            step!();
            p += 1;
        }
        let mut full = [[_mm256_setzero_ps(); 2]; AVX2_MR];
        for (f, ci) in full.iter_mut().zip(c) {
            f[..V].copy_from_slice(&ci);
        }
        if o.nv == 8 * V {
            return avx2_store::<V>(full, o);
        }
        // A ragged right edge: through a stack array and the portable epilogue.
        let mut acc = [0.0f32; AVX2_MR * AVX2_NR];
        for (i, ci) in full.iter().enumerate() {
            _mm256_storeu_ps(acc.as_mut_ptr().add(i * AVX2_NR), ci[0]);
            _mm256_storeu_ps(acc.as_mut_ptr().add(i * AVX2_NR + 8), ci[1]);
        }
        super::store_acc(&acc, AVX2_NR, o);
    }

    /// `$row!(i)` for each row `i < $mv` of an AVX2 tile, `i` a literal (so that the
    /// accumulators are indexed by constants and stay in registers); returns from the
    /// enclosing function after the last.
    macro_rules! avx2_rows {
        ($mv:expr, $row:ident) => {
            avx2_rows!(@ $mv, $row, 0 1 2 3 4 5)
        };
        (@ $mv:expr, $row:ident, $($i:literal)*) => {{
            // One literal per row of the tile: the list must follow `AVX2_MR`.
            const _: () = assert!(AVX2_MR == 6);
            $(
                if $i >= $mv {
                    return;
                }
                $row!($i);
            )*
        }};
    }

    /// The AVX2 kernels' epilogue for a tile `8 * V` columns wide, row by row with constant
    /// indices so that the accumulators stay in registers (as [`avx512_store`]).
    ///
    /// # Safety
    /// As [`avx2`], with `o.nv == 8 * V`; inlined into the AVX2 kernels.
    #[inline(always)]
    unsafe fn avx2_store<const V: usize>(c: [[__m256; 2]; AVX2_MR], o: &super::TileOut) {
        if o.alpha == 1.0 && o.add_old == 0.0 {
            return avx2_store_unit::<V, false>(c, o);
        }
        if o.alpha == 1.0 && o.add_old == 1.0 {
            return avx2_store_unit::<V, true>(c, o);
        }
        let alpha = _mm256_set1_ps(o.alpha);
        let add_old = _mm256_set1_ps(o.add_old);
        let (lo, hi) = o.clamp.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
        let (lo, hi) = (_mm256_set1_ps(lo), _mm256_set1_ps(hi));
        let mut bc = [_mm256_setzero_ps(); 2];
        if !o.bias_col.is_null() {
            for (v, x) in bc.iter_mut().enumerate().take(V) {
                *x = _mm256_loadu_ps(o.bias_col.add(8 * v));
            }
        }
        macro_rules! row {
            ($i:literal) => {{
                let i: usize = $i;
                let cp = o.c.add(i * o.ldc);
                for v in 0..V {
                    let mut x = c[$i][v];
                    if o.alpha != 1.0 {
                        x = _mm256_mul_ps(x, alpha);
                    }
                    if o.add_old != 0.0 {
                        x = _mm256_fmadd_ps(_mm256_loadu_ps(cp.add(8 * v)), add_old, x);
                    }
                    if o.last {
                        if !o.bias_row.is_null() {
                            x = _mm256_add_ps(x, _mm256_set1_ps(*o.bias_row.add(i)));
                        }
                        x = _mm256_add_ps(x, bc[v]);
                        if !o.res.is_null() {
                            x = _mm256_add_ps(x, _mm256_loadu_ps(o.res.add(i * o.ldr + 8 * v)));
                        }
                        if o.relu {
                            // maxps returns its second operand for NaN (and -0 vs +0): +0.
                            x = _mm256_max_ps(x, _mm256_setzero_ps());
                        }
                        if o.clamp.is_some() {
                            // Bounds first: a NaN in the second operand comes through.
                            x = _mm256_min_ps(hi, _mm256_max_ps(lo, x));
                        }
                    }
                    _mm256_storeu_ps(cp.add(8 * v), x);
                }
            }};
        }
        avx2_rows!(o.mv, row);
    }

    /// [`avx2_store`] with `alpha` 1 and C overwritten (`OLD` false) or added to (`OLD`
    /// true: the `K` blocks after the first): picks the variant of [`avx2_store_fast`]
    /// for the tile's options once per tile.
    ///
    /// # Safety
    /// As [`avx2_store`], with `o.alpha == 1` and `o.add_old` 0 (`OLD` false) or 1.
    #[inline(always)]
    unsafe fn avx2_store_unit<const V: usize, const OLD: bool>(
        c: [[__m256; 2]; AVX2_MR],
        o: &super::TileOut,
    ) {
        if !o.last {
            return avx2_store_fast::<V, OLD, false, false, 0>(c, o);
        }
        match (o.res.is_null(), o.relu, o.clamp.is_some()) {
            (true, false, false) => avx2_store_fast::<V, OLD, true, false, 0>(c, o),
            (true, true, _) => avx2_store_fast::<V, OLD, true, false, 1>(c, o),
            (true, false, true) => avx2_store_fast::<V, OLD, true, false, 2>(c, o),
            (false, false, false) => avx2_store_fast::<V, OLD, true, true, 0>(c, o),
            (false, true, _) => avx2_store_fast::<V, OLD, true, true, 1>(c, o),
            (false, false, true) => avx2_store_fast::<V, OLD, true, true, 2>(c, o),
        }
    }

    /// [`avx2_store`] for `alpha` 1 with every option a compile-time choice: C
    /// overwritten or added to (`OLD`), the last `K` block's bias, residual and activation
    /// (`LAST`, `RES`, `ACT`: 0 none, 1 Relu, 2 clamp). A row costs its loads, adds,
    /// activation and stores, with no per-vector tests of the tile's options: the general
    /// epilogue's tests put 42% of the kernel's `perf` samples after its `K` loop on a
    /// 144x24x3136 product.
    ///
    /// # Safety
    /// As [`avx2_store`], with `o.alpha == 1`, `o.add_old` 1 (`OLD`) or 0, and the
    /// tile's options as the parameters say.
    #[inline(always)]
    unsafe fn avx2_store_fast<
        const V: usize,
        const OLD: bool,
        const LAST: bool,
        const RES: bool,
        const ACT: u8,
    >(
        c: [[__m256; 2]; AVX2_MR],
        o: &super::TileOut,
    ) {
        let (lo, hi) = o.clamp.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
        let (lo, hi) = (_mm256_set1_ps(lo), _mm256_set1_ps(hi));
        let mut bc = [_mm256_setzero_ps(); 2];
        if !o.bias_col.is_null() {
            for (v, x) in bc.iter_mut().enumerate().take(V) {
                *x = _mm256_loadu_ps(o.bias_col.add(8 * v));
            }
        }
        let brow = o.bias_row;
        let (cp, ldc, rp, ldr) = (o.c, o.ldc, o.res, o.ldr);
        macro_rules! row {
            ($i:literal) => {{
                let i: usize = $i;
                let b = if !LAST || brow.is_null() {
                    _mm256_setzero_ps()
                } else {
                    _mm256_set1_ps(*brow.add(i))
                };
                for v in 0..V {
                    let mut x = c[$i][v];
                    if OLD {
                        x = _mm256_add_ps(x, _mm256_loadu_ps(cp.add(i * ldc + 8 * v)));
                    }
                    if LAST {
                        x = _mm256_add_ps(x, _mm256_add_ps(b, bc[v]));
                    }
                    if RES {
                        x = _mm256_add_ps(x, _mm256_loadu_ps(rp.add(i * ldr + 8 * v)));
                    }
                    if ACT == 1 {
                        x = _mm256_max_ps(x, _mm256_setzero_ps());
                    } else if ACT == 2 {
                        x = _mm256_min_ps(hi, _mm256_max_ps(lo, x));
                    }
                    _mm256_storeu_ps(cp.add(i * ldc + 8 * v), x);
                }
            }};
        }
        avx2_rows!(o.mv, row);
    }

    /// AVX2 + FMA for one column of a tile (`o.nv` must be 1), as [`avx512_col`]: the
    /// panel's 6 rows of `A` are one masked load per `k`, times a broadcast of `B`'s value
    /// in the column, in four chains over `k`. A 7x7 image is 49 columns: 3 x 16 + 1, whose
    /// last column would otherwise cost an 8-wide pass.
    ///
    /// # Safety
    /// As [`avx2`], with `o.nv == 1`; `b` points at the column's value in row 0.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn avx2_col(
        kc: usize,
        a: *const f32,
        b: *const f32,
        ldb: usize,
        o: &super::TileOut,
    ) {
        const MR: usize = AVX2_MR;
        let m = _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, 0, 0);
        let mut acc = [_mm256_setzero_ps(); 4];
        let (mut a, mut b) = (a, b);
        let mut k = 0;
        while k + 4 <= kc {
            for (j, c) in acc.iter_mut().enumerate() {
                let av = _mm256_maskload_ps(a.add(j * MR), m);
                *c = _mm256_fmadd_ps(av, _mm256_broadcast_ss(&*b.add(j * ldb)), *c);
            }
            a = a.wrapping_add(4 * MR);
            b = b.wrapping_add(4 * ldb);
            k += 4;
        }
        while k < kc {
            let av = _mm256_maskload_ps(a, m);
            acc[0] = _mm256_fmadd_ps(av, _mm256_broadcast_ss(&*b), acc[0]);
            a = a.wrapping_add(MR);
            b = b.wrapping_add(ldb);
            k += 1;
        }
        let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut v = [0.0f32; 8];
        _mm256_storeu_ps(v.as_mut_ptr(), sum);
        super::store_acc(&v[..MR], 1, &super::TileOut { nv: 1, ..*o });
    }

    /// [`avx2_part`] at full width: entry `r - 1` computes `r` rows (1 to `MR - 1`).
    pub static AVX2_ROWS: [super::MicroFn; AVX2_MR - 1] = [
        avx2_part::<1, 2>,
        avx2_part::<2, 2>,
        avx2_part::<3, 2>,
        avx2_part::<4, 2>,
        avx2_part::<5, 2>,
    ];

    /// [`avx2_part`] at half width (8 columns): entry `r - 1` computes `r` rows.
    pub static AVX2_HALF: [super::MicroFn; AVX2_MR] = [
        avx2_part::<1, 1>,
        avx2_part::<2, 1>,
        avx2_part::<3, 1>,
        avx2_part::<4, 1>,
        avx2_part::<5, 1>,
        avx2_part::<6, 1>,
    ];

    pub const AVX512_MR: usize = 14;
    pub const AVX512_NR: usize = 32;

    /// How many `B` rows ahead the AVX-512 kernel prefetches.
    pub const B_AHEAD: usize = 8;

    /// AVX-512F: 14 x 32, twenty-eight zmm accumulators, broadcasts from memory.
    ///
    /// `B` rows are prefetched [`B_AHEAD`] rows ahead: a 1x1 convolution's `B` is the image
    /// read in place, rows a whole plane apart, a stride no hardware prefetcher follows.
    /// Measured with `examples/pw_bench.rs` on ResNet-50's 1x1 shapes: 4% less time on one
    /// thread, 5% on two, up to 12% on the 56x56 layers; 4 to 16 rows ahead measure alike.
    ///
    /// # Safety
    /// See [`super::MicroFn`]; needs AVX-512F.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub unsafe fn avx512(kc: usize, a: *const f32, b: *const f32, ldb: usize, o: &super::TileOut) {
        // NR = 32: two 16-lane vectors per row; the whole tile is the widest `avx512_part`.
        avx512_part::<AVX512_MR, 2>(kc, a, b, ldb, o)
    }

    /// AVX-512F for the first `R` rows (of [`AVX512_MR`]) and the first `16 * V` columns
    /// (of 32) of a tile; the panels keep their strides. `R = 14, V = 2` is the full
    /// kernel [`avx512`]; the others serve ragged tiles. A
    /// product with 64 rows has a last row panel of 8: 14-row work there costs 8.6% of
    /// the whole product; a matrix-vector product (one row: a classifier at batch 1)
    /// costs 14x; a last column panel at most 16 wide takes half the width (a 14x14
    /// image's last 4 of 196 columns go to [`avx512_cols`] instead).
    ///
    /// # Safety
    /// As [`avx512`], with `o.mv <= R` and `o.nv <= 16 * V`.
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    unsafe fn avx512_part<const R: usize, const V: usize>(
        kc: usize,
        a: *const f32,
        b: *const f32,
        ldb: usize,
        o: &super::TileOut,
    ) {
        let mut c = [[_mm512_setzero_ps(); V]; R];
        let (mut a, mut b) = (a, b);
        // The residual rows the epilogue adds are a plane apart, a pattern no hardware
        // prefetcher follows: fetch one row per step over the first steps of `k`.
        let res = if o.last { o.res } else { std::ptr::null() };
        // Then the output rows, for writing, one per step after the residual's: C's rows
        // are a plane apart too, and a store that misses waits for its line. Measured
        // with `examples/pw_bench.rs --cold` (+res): ResNet-50's 1x1 shapes 0.91-0.96x
        // the time in all on 1 thread, 0.89-0.94x on 2, its 256x64x3136 layer 0.75-0.8x;
        // per layer in `millrace profile` on 1 thread, its layer1 1x1s 0.79-0.84x.
        let nres = if res.is_null() { 0 } else { o.mv };
        let lead = if o.last { kc.min(nres + o.mv) } else { 0 };
        let pfb = if o.pf_b == 0 { B_AHEAD * ldb } else { o.pf_b };
        macro_rules! step {
            () => {{
                let mut bv = [_mm512_setzero_ps(); V];
                for (v, x) in bv.iter_mut().enumerate() {
                    _mm_prefetch::<_MM_HINT_T0>(b.wrapping_add(pfb + 16 * v) as *const i8);
                    *x = _mm512_loadu_ps(b.add(16 * v));
                }
                for (i, ci) in c.iter_mut().enumerate() {
                    let ai = _mm512_set1_ps(*a.add(i));
                    for (cv, x) in ci.iter_mut().zip(bv) {
                        *cv = _mm512_fmadd_ps(ai, x, *cv);
                    }
                }
                a = a.wrapping_add(AVX512_MR);
                b = b.wrapping_add(ldb);
            }};
        }
        // The steps that prefetch a residual row, then the rest two at a time (one loop
        // counter per two steps: 0.96-0.98x the time over pw_bench's shapes, 1 and 2
        // threads, against one step per iteration with the prefetch test inside).
        let mut p = 0;
        while p < lead {
            if p < nres {
                let rp = res.add(p * o.ldr) as *const i8;
                _mm_prefetch::<_MM_HINT_T0>(rp);
                _mm_prefetch::<_MM_HINT_T0>(rp.wrapping_add(64 * V - 1));
            } else {
                let cp = o.c.wrapping_add((p - nres) * o.ldc) as *const i8;
                _mm_prefetch::<_MM_HINT_ET0>(cp);
                _mm_prefetch::<_MM_HINT_ET0>(cp.wrapping_add(64 * V - 1));
            }
            step!();
            p += 1;
        }
        // The next row panel's lines, two per two steps (a step reads 14 of `A`'s values).
        let mut pf = o.pf_a as *const i8;
        while p + 2 <= kc {
            if !pf.is_null() {
                _mm_prefetch::<_MM_HINT_T1>(pf);
                _mm_prefetch::<_MM_HINT_T1>(pf.wrapping_add(64));
                pf = pf.wrapping_add(128);
            }
            step!();
            step!();
            p += 2;
        }
        while p < kc {
            step!();
            p += 1;
        }
        let mut full = [[_mm512_setzero_ps(); 2]; AVX512_MR];
        for (f, ci) in full.iter_mut().zip(c) {
            f[..V].copy_from_slice(&ci);
        }
        if R == AVX512_MR && V == 2 {
            // The whole tile: `o` is within it already.
            return avx512_store(full, o);
        }
        let part = super::TileOut {
            mv: o.mv.min(R),
            nv: o.nv.min(16 * V),
            ..*o
        };
        avx512_store(full, &part)
    }

    /// AVX-512F for one column of a tile (`o.nv` must be 1): the panel's 14 rows of `A`
    /// are one masked vector per `k`, times a broadcast of `B`'s value in the column, in
    /// four chains over `k` (so not bit-identical to the full kernel, whose sum runs in
    /// one chain per element). A 7x7 image is 49 columns: 32 + 16 + 1, where the last
    /// column alone would cost a 16-wide kernel pass.
    ///
    /// # Safety
    /// As [`avx512`], with `o.nv == 1`; `b` points at the column's value in row 0.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub unsafe fn avx512_col(
        kc: usize,
        a: *const f32,
        b: *const f32,
        ldb: usize,
        o: &super::TileOut,
    ) {
        const MR: usize = AVX512_MR;
        let m: __mmask16 = (1u16 << MR) - 1;
        let mut acc = [_mm512_setzero_ps(); 4];
        let (mut a, mut b) = (a, b);
        let mut k = 0;
        while k + 4 <= kc {
            for (j, c) in acc.iter_mut().enumerate() {
                let av = _mm512_maskz_loadu_ps(m, a.add(j * MR));
                *c = _mm512_fmadd_ps(av, _mm512_set1_ps(*b.add(j * ldb)), *c);
            }
            a = a.wrapping_add(4 * MR);
            b = b.wrapping_add(4 * ldb);
            k += 4;
        }
        while k < kc {
            let av = _mm512_maskz_loadu_ps(m, a);
            acc[0] = _mm512_fmadd_ps(av, _mm512_set1_ps(*b), acc[0]);
            a = a.wrapping_add(MR);
            b = b.wrapping_add(ldb);
            k += 1;
        }
        let sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
        let mut v = [0.0f32; 16];
        _mm512_storeu_ps(v.as_mut_ptr(), sum);
        super::store_acc(&v[..MR], 1, &super::TileOut { nv: 1, ..*o });
    }

    /// AVX-512F for the last 1 to [`AVX512_COLS_MAX`] columns of a tile (`o.nv` of them,
    /// one column as [`avx512_col`]): the panel's 14 rows of `A` are one masked vector per
    /// `k`, times a broadcast of each column's value of `B`, in two chains per column over
    /// `k` (rounding as [`avx512_col`], not bit-identical to the full kernel). A 14x14
    /// image is 196 columns, 6 x 32 + 4: the 4 columns as a 16-wide pass cost 14 FMAs per
    /// `k`, here 4.
    ///
    /// # Safety
    /// As [`avx512`], with `1 <= o.nv <= AVX512_COLS_MAX`; `b` points at the first column's
    /// value in row 0.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub unsafe fn avx512_cols(
        kc: usize,
        a: *const f32,
        b: *const f32,
        ldb: usize,
        o: &super::TileOut,
    ) {
        match o.nv {
            1 => avx512_col(kc, a, b, ldb, o),
            2 => avx512_ncols::<2>(kc, a, b, ldb, o),
            3 => avx512_ncols::<3>(kc, a, b, ldb, o),
            4 => avx512_ncols::<4>(kc, a, b, ldb, o),
            5 => avx512_ncols::<5>(kc, a, b, ldb, o),
            6 => avx512_ncols::<6>(kc, a, b, ldb, o),
            7 => avx512_ncols::<7>(kc, a, b, ldb, o),
            8 => avx512_ncols::<8>(kc, a, b, ldb, o),
            9 => avx512_ncols::<9>(kc, a, b, ldb, o),
            10 => avx512_ncols::<10>(kc, a, b, ldb, o),
            11 => avx512_ncols::<11>(kc, a, b, ldb, o),
            _ => avx512_ncols::<AVX512_COLS_MAX>(kc, a, b, ldb, o),
        }
    }

    /// The widest tile edge [`avx512_cols`] computes.
    pub const AVX512_COLS_MAX: usize = 12;

    /// [`avx512_cols`] for `C` columns.
    ///
    /// # Safety
    /// As [`avx512_cols`], with `o.nv == C`.
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn avx512_ncols<const C: usize>(
        kc: usize,
        a: *const f32,
        b: *const f32,
        ldb: usize,
        o: &super::TileOut,
    ) {
        const MR: usize = AVX512_MR;
        let m: __mmask16 = (1u16 << MR) - 1;
        let mut acc = [[_mm512_setzero_ps(); C]; 2];
        let (mut a, mut b) = (a, b);
        let mut k = 0;
        while k + 2 <= kc {
            for (s, set) in acc.iter_mut().enumerate() {
                let av = _mm512_maskz_loadu_ps(m, a.add(s * MR));
                let bs = b.add(s * ldb);
                for (j, c) in set.iter_mut().enumerate() {
                    *c = _mm512_fmadd_ps(av, _mm512_set1_ps(*bs.add(j)), *c);
                }
            }
            a = a.wrapping_add(2 * MR);
            b = b.wrapping_add(2 * ldb);
            k += 2;
        }
        if k < kc {
            let av = _mm512_maskz_loadu_ps(m, a);
            for (j, c) in acc[0].iter_mut().enumerate() {
                *c = _mm512_fmadd_ps(av, _mm512_set1_ps(*b.add(j)), *c);
            }
        }
        // Column `j`'s sums are lanes of one vector: lay them out as rows of the tile.
        let mut cols = [[0.0f32; 16]; C];
        for (j, col) in cols.iter_mut().enumerate() {
            _mm512_storeu_ps(col.as_mut_ptr(), _mm512_add_ps(acc[0][j], acc[1][j]));
        }
        let mut tile = [0.0f32; AVX512_COLS_MAX * MR];
        for (i, row) in tile.chunks_exact_mut(C).take(MR).enumerate() {
            for (x, col) in row.iter_mut().zip(&cols) {
                *x = col[i];
            }
        }
        super::store_acc(&tile[..MR * C], C, &super::TileOut { nv: C, ..*o });
    }

    /// [`avx512_part`] at full width: entry `r - 1` computes `r` rows (1 to `MR - 1`).
    pub static AVX512_ROWS: [super::MicroFn; AVX512_MR - 1] = [
        avx512_part::<1, 2>,
        avx512_part::<2, 2>,
        avx512_part::<3, 2>,
        avx512_part::<4, 2>,
        avx512_part::<5, 2>,
        avx512_part::<6, 2>,
        avx512_part::<7, 2>,
        avx512_part::<8, 2>,
        avx512_part::<9, 2>,
        avx512_part::<10, 2>,
        avx512_part::<11, 2>,
        avx512_part::<12, 2>,
        avx512_part::<13, 2>,
    ];

    /// [`avx512_part`] at half width (16 columns): entry `r - 1` computes `r` rows.
    pub static AVX512_HALF: [super::MicroFn; AVX512_MR] = [
        avx512_part::<1, 1>,
        avx512_part::<2, 1>,
        avx512_part::<3, 1>,
        avx512_part::<4, 1>,
        avx512_part::<5, 1>,
        avx512_part::<6, 1>,
        avx512_part::<7, 1>,
        avx512_part::<8, 1>,
        avx512_part::<9, 1>,
        avx512_part::<10, 1>,
        avx512_part::<11, 1>,
        avx512_part::<12, 1>,
        avx512_part::<13, 1>,
        avx512_part::<14, 1>,
    ];

    /// The AVX-512 kernels' epilogue, row by row with constant indices so that the
    /// accumulators stay in registers (a loop over a run-time row count kept them in a stack
    /// array: 28 stores and reloads per tile).
    ///
    /// # Safety
    /// As [`avx512`]; inlined into the AVX-512 kernels, whose instruction set it uses.
    #[inline(always)]
    unsafe fn avx512_store(c: [[__m512; 2]; AVX512_MR], o: &super::TileOut) {
        // The epilogue in registers, masked at the right edge.
        let m0: __mmask16 = if o.nv >= 16 {
            0xFFFF
        } else {
            (1u16 << o.nv) - 1
        };
        let m1: __mmask16 = if o.nv >= 32 {
            0xFFFF
        } else if o.nv > 16 {
            (1u16 << (o.nv - 16)) - 1
        } else {
            0
        };
        let alpha = _mm512_set1_ps(o.alpha);
        let add_old = _mm512_set1_ps(o.add_old);
        let (lo, hi) = o.clamp.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
        let (lo, hi) = (_mm512_set1_ps(lo), _mm512_set1_ps(hi));
        let (bc0, bc1) = if o.bias_col.is_null() {
            (_mm512_setzero_ps(), _mm512_setzero_ps())
        } else {
            (
                _mm512_maskz_loadu_ps(m0, o.bias_col),
                _mm512_maskz_loadu_ps(m1, o.bias_col.add(16)),
            )
        };
        // A macro, not a closure: a closure is compiled without the caller's instruction
        // set and called per row.
        macro_rules! row {
            ($i:literal) => {{
                let i: usize = $i;
                let (mut v0, mut v1) = (c[$i][0], c[$i][1]);
                let cp = o.c.add(i * o.ldc);
                if o.alpha != 1.0 {
                    v0 = _mm512_mul_ps(v0, alpha);
                    v1 = _mm512_mul_ps(v1, alpha);
                }
                if o.add_old != 0.0 {
                    v0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m0, cp), add_old, v0);
                    v1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m1, cp.add(16)), add_old, v1);
                }
                if o.last {
                    if !o.bias_row.is_null() {
                        let b = _mm512_set1_ps(*o.bias_row.add(i));
                        v0 = _mm512_add_ps(v0, b);
                        v1 = _mm512_add_ps(v1, b);
                    }
                    v0 = _mm512_add_ps(v0, bc0);
                    v1 = _mm512_add_ps(v1, bc1);
                    if !o.res.is_null() {
                        let rp = o.res.add(i * o.ldr);
                        v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, rp));
                        v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, rp.add(16)));
                    }
                    if o.relu {
                        // maxps returns its second operand for NaN (and for -0 vs +0): +0.
                        v0 = _mm512_max_ps(v0, _mm512_setzero_ps());
                        v1 = _mm512_max_ps(v1, _mm512_setzero_ps());
                    }
                    if o.clamp.is_some() {
                        // Bounds first: a NaN in the second operand comes through.
                        v0 = _mm512_min_ps(hi, _mm512_max_ps(lo, v0));
                        v1 = _mm512_min_ps(hi, _mm512_max_ps(lo, v1));
                    }
                }
                _mm512_mask_storeu_ps(cp, m0, v0);
                _mm512_mask_storeu_ps(cp.add(16), m1, v1);
            }};
        }
        macro_rules! rows {
            ($($i:literal)*) => {
                $(
                    if $i >= o.mv {
                        return;
                    }
                    row!($i);
                )*
            };
        }
        // One literal per row of the tile: the list must follow `AVX512_MR`.
        const _: () = assert!(AVX512_MR == 14);
        rows!(0 1 2 3 4 5 6 7 8 9 10 11 12 13);
    }
}
