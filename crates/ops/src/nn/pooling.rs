//! Shared pooling machinery: a window table (for each output position, the flat plane
//! indices it reads and its padded size) built once and applied to every N x C plane.
use super::common::{prod, Resolved, Window};
use millrace_core::{DType, Dim, Tensor};
use millrace_ir::{F32View, InferCtx, OpError, ValueType};
use millrace_kernels::conv::Geom2d;

/// For each output position, the input plane indices its window reads.
pub struct Table {
    pub starts: Vec<usize>,
    pub taps: Vec<usize>,
    /// Window size clipped to the padded input (for count_include_pad).
    pub padded: Vec<usize>,
    pub in_plane: usize,
    pub out_plane: usize,
}

impl Table {
    #[allow(clippy::needless_range_loop)]
    pub fn new(input: &[usize], r: &Resolved) -> Table {
        let n = input.len();
        // Per dim, per output index: valid input positions and padded count.
        let mut valid: Vec<Vec<Vec<usize>>> = Vec::with_capacity(n);
        let mut padc: Vec<Vec<usize>> = Vec::with_capacity(n);
        for d in 0..n {
            let mut vd = Vec::with_capacity(r.output[d]);
            let mut pd = Vec::with_capacity(r.output[d]);
            for o in 0..r.output[d] {
                let mut v = vec![];
                let mut cnt = 0;
                for k in 0..r.kernel[d] {
                    let p =
                        (o * r.strides[d] + k * r.dilations[d]) as isize - r.pads_begin[d] as isize;
                    if p >= -(r.pads_begin[d] as isize) && p < (input[d] + r.pads_end[d]) as isize {
                        cnt += 1;
                    }
                    if p >= 0 && p < input[d] as isize {
                        v.push(p as usize);
                    }
                }
                vd.push(v);
                pd.push(cnt);
            }
            valid.push(vd);
            padc.push(pd);
        }
        let out_plane = prod(&r.output);
        let mut t = Table {
            starts: Vec::with_capacity(out_plane + 1),
            taps: vec![],
            padded: Vec::with_capacity(out_plane),
            in_plane: prod(input),
            out_plane,
        };
        t.starts.push(0);
        if out_plane == 0 {
            return t;
        }
        let mut counter = vec![0usize; n];
        for _ in 0..out_plane {
            let lists: Vec<&Vec<usize>> = (0..n).map(|d| &valid[d][counter[d]]).collect();
            t.padded
                .push((0..n).map(|d| padc[d][counter[d]]).product::<usize>());
            if lists.iter().all(|l| !l.is_empty()) {
                let mut kc = vec![0usize; n];
                'product: loop {
                    let mut idx = 0;
                    for d in 0..n {
                        idx = idx * input[d] + lists[d][kc[d]];
                    }
                    t.taps.push(idx);
                    let mut d = n;
                    loop {
                        if d == 0 {
                            break 'product;
                        }
                        d -= 1;
                        kc[d] += 1;
                        if kc[d] < lists[d].len() {
                            break;
                        }
                        kc[d] = 0;
                    }
                }
            }
            t.starts.push(t.taps.len());
            for d in (0..n).rev() {
                counter[d] += 1;
                if counter[d] < r.output[d] {
                    break;
                }
                counter[d] = 0;
            }
        }
        t
    }

    /// Input plane indices read by output position `o`.
    pub fn window(&self, o: usize) -> &[usize] {
        &self.taps[self.starts[o]..self.starts[o + 1]]
    }
}

/// Validates a pooling input shape and resolves the window.
pub fn resolve(op: &str, w: &Window, x: &[usize]) -> Result<Resolved, OpError> {
    if x.len() < 3 {
        return Err(OpError::invalid(
            op,
            format!("input must be N x C x D1..., got shape {x:?}"),
        ));
    }
    w.resolve(op, &x[2..], None)
}

/// Shape inference for pooling: `[N, C, out...]`.
pub fn infer(op: &str, w: &Window, ctx: &InferCtx<'_>) -> Result<ValueType, OpError> {
    let x = ctx.input(0)?;
    let shape = match &x.shape {
        Some(s) if s.len() < 3 => {
            return Err(OpError::invalid(op, "input must be N x C x D1..."));
        }
        Some(s) => {
            let mut out: Vec<Dim> = s[..2].to_vec();
            out.extend(w.infer(op, &s[2..], None));
            Some(out)
        }
        None => None,
    };
    Ok(ValueType {
        dtype: x.dtype,
        shape,
    })
}

/// Global pooling output shape: `[N, C, 1, ...]`.
pub fn global_infer(op: &str, ctx: &InferCtx<'_>) -> Result<ValueType, OpError> {
    let x = ctx.input(0)?;
    let shape = match &x.shape {
        Some(s) if s.len() < 2 => return Err(OpError::invalid(op, "input must be N x C x ...")),
        Some(s) => Some(
            s.iter()
                .enumerate()
                .map(|(i, d)| if i < 2 { d.clone() } else { Dim::Known(1) })
                .collect(),
        ),
        None => None,
    };
    Ok(ValueType {
        dtype: x.dtype,
        shape,
    })
}

/// Output shape `[N, C, out...]` for a concrete input.
pub fn out_shape(x: &[usize], r: &Resolved) -> Vec<usize> {
    let mut s = x[..2].to_vec();
    s.extend(&r.output);
    s
}

/// The kernels' geometry for a 4-D (N x C x H x W) f32 input, every N x C plane a channel;
/// `None` when the fast 2-D kernels do not apply (other dtypes or ranks).
pub fn geom2d(x: &Tensor, r: &Resolved) -> Option<Geom2d> {
    if x.dtype() != DType::F32 {
        return None;
    }
    geom2d_shape(x.shape(), r)
}

/// [`geom2d`] of an f32 input of shape `s`.
pub fn geom2d_shape(s: &[usize], r: &Resolved) -> Option<Geom2d> {
    if s.len() != 4 || r.output.len() != 2 {
        return None;
    }
    Some(Geom2d {
        c: s[0].checked_mul(s[1])?,
        h: s[2],
        w: s[3],
        kh: r.kernel[0],
        kw: r.kernel[1],
        sh: r.strides[0],
        sw: r.strides[1],
        dh: r.dilations[0],
        dw: r.dilations[1],
        pt: r.pads_begin[0],
        pl: r.pads_begin[1],
        oh: r.output[0],
        ow: r.output[1],
    })
}

/// An error from the pooling kernels, as the op's error.
pub fn kernel_err(op: &str, e: millrace_kernels::pool::PoolError) -> OpError {
    OpError::invalid(op, e.to_string())
}

/// `writes_into` of the 2-D f32 pooling kernels: one f32 output of the resolved shape.
pub fn pool2d_writes_into(
    op: &str,
    w: &Window,
    inputs: &[ValueType],
    outputs: &[ValueType],
) -> bool {
    if !crate::planned::f32_io(inputs, outputs, 1) {
        return false;
    }
    let (Some(x), Some(y)) = (
        crate::planned::f32_shape(&inputs[0]),
        crate::planned::f32_shape(&outputs[0]),
    ) else {
        return false;
    };
    resolve(op, w, &x).is_ok_and(|r| geom2d_shape(&x, &r).is_some() && out_shape(&x, &r) == y)
}

/// The input, resolved window and kernel geometry of a 2-D pooling `eval_into`, checked
/// against the output buffer.
pub fn pool2d_args<'a>(
    op: &str,
    w: &Window,
    inputs: &[Option<F32View<'a>>],
    out: &[f32],
    out_sh: &[usize],
) -> Result<(&'a [f32], Resolved, Geom2d), OpError> {
    let x = F32View::req(inputs, op, 0)?;
    let r = resolve(op, w, x.shape)?;
    let g = geom2d_shape(x.shape, &r)
        .ok_or_else(|| OpError::unsupported(op, "eval_into of a non-2-D pooling"))?;
    crate::planned::check_shape(op, "output", out_sh, &out_shape(x.shape, &r))?;
    crate::planned::check_out(op, out, out_sh)?;
    Ok((x.data, r, g))
}
