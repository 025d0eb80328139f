//! MaxPool (ONNX opsets 1, 8, 10, 11, 12, 22): N-d max over windows, with optional
//! Indices output (flat positions in the whole input, row- or column-major per
//! storage_order).
use super::common::{opt_usizes, Window};
use super::pooling::{
    geom2d, infer, kernel_err, out_shape, pool2d_args, pool2d_writes_into, resolve, Table,
};
use crate::util::{output, Num};
use millrace_core::{DType, Tensor};
use millrace_ir::{Attributes, Cost, F32View, InferCtx, Inputs, Op, OpError, ValueType};
use rayon::prelude::*;
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct MaxPool {
    pub window: Window,
    pub column_major: bool,
    /// Whether the node declares the `Indices` output (true when unknown).
    pub indices: bool,
}

const NAME: &str = "MaxPool";

impl MaxPool {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let mut mp = MaxPool::parse(attrs)?;
        mp.indices = attrs.node_outputs() != 1;
        Ok(Arc::new(mp))
    }

    pub fn parse(attrs: &Attributes) -> Result<MaxPool, OpError> {
        let window = Window::from_attrs(NAME, attrs)?;
        if window.kernel.is_none() {
            return Err(OpError::attribute(
                NAME,
                "kernel_shape",
                "required but absent",
            ));
        }
        let _ = opt_usizes(NAME, attrs, "dilations")?;
        let column_major = match attrs.int_or("storage_order", 0)? {
            0 => false,
            1 => true,
            v => {
                return Err(OpError::attribute(
                    NAME,
                    "storage_order",
                    format!("must be 0 or 1, got {v}"),
                ))
            }
        };
        Ok(MaxPool {
            window,
            column_major,
            indices: true,
        })
    }
}

fn pool<T: Num + Send + Sync>(
    x: &[T],
    t: &Table,
    planes: usize,
    col_index: &(dyn Fn(usize) -> usize + Sync),
) -> (Vec<T>, Vec<i64>) {
    let mut y = vec![T::default(); planes * t.out_plane];
    let mut ind = vec![0i64; planes * t.out_plane];
    if t.out_plane == 0 {
        return (y, ind);
    }
    let lowest = T::from_f64(f64::NEG_INFINITY);
    y.par_chunks_mut(t.out_plane)
        .zip(ind.par_chunks_mut(t.out_plane))
        .enumerate()
        .for_each(|(p, (yo, io))| {
            let xi = &x[p * t.in_plane..(p + 1) * t.in_plane];
            for o in 0..t.out_plane {
                let mut best = lowest;
                let mut at: Option<usize> = None;
                for &i in t.window(o) {
                    let v = xi[i];
                    if at.is_none() || v > best {
                        best = v;
                        at = Some(i);
                    }
                }
                yo[o] = best;
                io[o] = match at {
                    Some(i) => (p * t.in_plane + col_index(i)) as i64,
                    None => -1,
                };
            }
        });
    (y, ind)
}

impl Op for MaxPool {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let y = infer(NAME, &self.window, ctx)?;
        if !self.indices {
            return Ok(vec![y]);
        }
        let ind = ValueType {
            dtype: Some(DType::I64),
            shape: y.shape.clone(),
        };
        Ok(vec![y, ind])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        let k: usize = self.window.kernel.iter().flatten().product();
        let mut c = Cost::movement(inputs, &outputs[..outputs.len().min(1)]);
        c.flops = outputs.first().and_then(|t| t.numel()).unwrap_or(0) as u64 * k as u64;
        c
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        let r = resolve(NAME, &self.window, x.shape())?;
        if !self.indices && geom2d(x, &r).is_some() {
            let shape = out_shape(x.shape(), &r);
            let views = crate::planned::views(NAME, inputs)?;
            return Ok(vec![crate::planned::alloc_f32(NAME, shape.clone(), |y| {
                self.eval_into(&views, y, &shape)
            })?]);
        }
        let input = &x.shape()[2..];
        let table = Table::new(input, &r);
        let planes = x.shape()[0] * x.shape()[1];
        let shape = out_shape(x.shape(), &r);
        // Column-major position within a plane for storage_order=1.
        let col_strides: Vec<usize> = input
            .iter()
            .scan(1usize, |s, &d| {
                let v = *s;
                *s *= d;
                Some(v)
            })
            .collect();
        let col_index = |i: usize| -> usize {
            if !self.column_major {
                return i;
            }
            let mut rem = i;
            let mut out = 0;
            for d in (0..input.len()).rev() {
                out += (rem % input[d]) * col_strides[d];
                rem /= input[d];
            }
            out
        };
        let (y, ind) = crate::dispatch_num!(NAME, x, |v: T| {
            let (y, ind) = pool::<T>(v, &table, planes, &col_index);
            (output(NAME, shape.clone(), y)?, ind)
        });
        if !self.indices {
            return Ok(vec![y]);
        }
        Ok(vec![y, output(NAME, shape, ind)?])
    }

    fn writes_into(&self, inputs: &[ValueType], outputs: &[ValueType]) -> bool {
        !self.indices && pool2d_writes_into(NAME, &self.window, inputs, outputs)
    }

    fn eval_into(
        &self,
        inputs: &[Option<F32View<'_>>],
        out: &mut [f32],
        out_shape: &[usize],
    ) -> Result<(), OpError> {
        if self.indices {
            return Err(OpError::unsupported(NAME, "eval_into with Indices"));
        }
        let (x, _, g) = pool2d_args(NAME, &self.window, inputs, out, out_shape)?;
        millrace_kernels::pool::max_pool2d(x, &g, out).map_err(|e| kernel_err(NAME, e))
    }

    fn describe(&self) -> String {
        let mut s = self.window.describe();
        if self.column_major {
            s.push_str(" storage_order=1");
        }
        s
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::nn::conv::tests::{attrs, rnd};
    use millrace_ir::Attr;

    /// Naive 2-D pooling reference: returns (max, argmax flat plane index, sum, valid
    /// count, padded count) per output.
    #[allow(clippy::type_complexity)]
    pub fn naive2d(
        x: &[f32],
        h: usize,
        w: usize,
        r: &crate::nn::common::Resolved,
    ) -> Vec<(f32, usize, f32, usize, usize)> {
        let mut out = vec![];
        for oy in 0..r.output[0] {
            for ox in 0..r.output[1] {
                let (mut mx, mut am, mut sum, mut cnt, mut pc) = (f32::NEG_INFINITY, 0, 0.0, 0, 0);
                for ky in 0..r.kernel[0] {
                    for kx in 0..r.kernel[1] {
                        let iy = (oy * r.strides[0] + ky * r.dilations[0]) as isize
                            - r.pads_begin[0] as isize;
                        let ix = (ox * r.strides[1] + kx * r.dilations[1]) as isize
                            - r.pads_begin[1] as isize;
                        let in_pad_y = iy < (h + r.pads_end[0]) as isize;
                        let in_pad_x = ix < (w + r.pads_end[1]) as isize;
                        if in_pad_y && in_pad_x {
                            pc += 1;
                        }
                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                            continue;
                        }
                        let i = iy as usize * w + ix as usize;
                        if x[i] > mx {
                            mx = x[i];
                            am = i;
                        }
                        sum += x[i];
                        cnt += 1;
                    }
                }
                out.push((mx, am, sum, cnt, pc));
            }
        }
        out
    }

    pub fn ints(v: &[i64]) -> Attr {
        Attr::Ints(v.to_vec())
    }

    /// (kernel, strides, dilations, pads, auto_pad, ceil_mode).
    pub type PoolCase = (Vec<i64>, Vec<i64>, Vec<i64>, Vec<i64>, &'static str, i64);

    /// Pooling cases over a 7x6 input.
    pub fn cases() -> Vec<PoolCase> {
        vec![
            (
                vec![3, 3],
                vec![2, 2],
                vec![1, 1],
                vec![1, 1, 1, 1],
                "NOTSET",
                0,
            ),
            (
                vec![3, 2],
                vec![2, 2],
                vec![1, 1],
                vec![0, 0, 0, 0],
                "NOTSET",
                1,
            ),
            (
                vec![2, 2],
                vec![1, 2],
                vec![2, 1],
                vec![1, 0, 0, 1],
                "NOTSET",
                0,
            ),
            (
                vec![3, 3],
                vec![2, 2],
                vec![1, 1],
                vec![1, 1, 1, 1],
                "NOTSET",
                1,
            ),
            (vec![2, 3], vec![2, 2], vec![1, 1], vec![], "SAME_UPPER", 0),
            (vec![2, 3], vec![2, 2], vec![1, 1], vec![], "SAME_LOWER", 0),
            (vec![3, 3], vec![2, 1], vec![1, 1], vec![], "VALID", 0),
        ]
    }

    pub fn case_attrs(op: &str, c: &PoolCase, extra: Vec<(&str, Attr)>) -> Attributes {
        let mut items = vec![
            ("kernel_shape", ints(&c.0)),
            ("strides", ints(&c.1)),
            ("dilations", ints(&c.2)),
            ("auto_pad", Attr::String(c.4.as_bytes().to_vec())),
            ("ceil_mode", Attr::Int(c.5)),
        ];
        if !c.3.is_empty() {
            items.push(("pads", ints(&c.3)));
        }
        items.extend(extra);
        attrs(op, items)
    }

    /// MaxPool (without Indices), AveragePool and the global pools: the planned path
    /// gives `eval`'s bits; MaxPool with Indices and non-4-D pools refuse it.
    #[test]
    fn planned_paths_match_eval() {
        use crate::into_check::{check, rand, refuses};
        use crate::nn::average_pool::AveragePool;
        use crate::nn::global_average_pool::GlobalAveragePool;
        use crate::nn::global_max_pool::GlobalMaxPool;
        use millrace_core::DType;
        let x = rand(&[2, 3, 7, 6], 5);
        for c in cases() {
            let mut mp = MaxPool::parse(&case_attrs(NAME, &c, vec![])).unwrap();
            let t = |s: &[usize]| ValueType::concrete(DType::F32, s);
            let r = resolve(NAME, &mp.window, x.shape()).unwrap();
            let ys = out_shape(x.shape(), &r);
            refuses(&mp, &[t(x.shape())], &[t(&ys)]);
            mp.indices = false;
            check(&mp, &[Some(&x)]);
            refuses(
                &mp,
                &[t(x.shape())],
                &[t(&ys), ValueType::concrete(DType::I64, &ys)],
            );
            refuses(&mp, &[t(&[2, 3, 7])], &[t(&ys)]);
            for cip in [0, 1] {
                let a = AveragePool::parse(&case_attrs(
                    "AveragePool",
                    &c,
                    vec![("count_include_pad", Attr::Int(cip))],
                ))
                .unwrap();
                check(&a, &[Some(&x)]);
            }
        }
        for shape in [&[2, 3, 7, 6][..], &[1, 4, 9], &[2, 5]] {
            let x = rand(shape, 6);
            check(&GlobalAveragePool, &[Some(&x)]);
            check(&GlobalMaxPool, &[Some(&x)]);
        }
    }

    #[test]
    fn matches_naive_reference() {
        let (h, w) = (7, 6);
        for (ci, c) in cases().iter().enumerate() {
            let mp = MaxPool::parse(&case_attrs(NAME, c, vec![])).unwrap();
            let x = rnd(2 * h * w, ci as u64);
            let xt = Tensor::from_vec(vec![1, 2, h, w], x.clone()).unwrap();
            let r = resolve(NAME, &mp.window, xt.shape()).unwrap();
            let y = mp.eval(&Inputs::new(NAME, &[Some(&xt)])).unwrap();
            let got = y[0].as_slice::<f32>().unwrap();
            let ind = y[1].as_slice::<i64>().unwrap();
            let op = r.output[0] * r.output[1];
            for p in 0..2 {
                let want = naive2d(&x[p * h * w..], h, w, &r);
                for (o, wv) in want.iter().enumerate() {
                    assert_eq!(got[p * op + o], wv.0, "case {ci}");
                    assert_eq!(ind[p * op + o], (p * h * w + wv.1) as i64, "case {ci}");
                }
            }
        }
    }

    #[test]
    fn fast_path_equals_generic_path() {
        let (h, w) = (13, 11);
        for (ci, c) in cases().iter().enumerate() {
            let generic = MaxPool::parse(&case_attrs(NAME, c, vec![])).unwrap();
            let fast = MaxPool {
                indices: false,
                ..generic.clone()
            };
            let xt = Tensor::from_vec(vec![2, 3, h, w], rnd(6 * h * w, 40 + ci as u64)).unwrap();
            let a = generic.eval(&Inputs::new(NAME, &[Some(&xt)])).unwrap();
            let b = fast.eval(&Inputs::new(NAME, &[Some(&xt)])).unwrap();
            assert_eq!(b.len(), 1);
            assert_eq!(a[0].shape(), b[0].shape());
            assert_eq!(
                a[0].as_slice::<f32>().unwrap(),
                b[0].as_slice::<f32>().unwrap(),
                "case {ci}"
            );
        }
    }

    /// `cargo test --release -p millrace-ops --lib bench_pools -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn bench_pools() {
        use crate::nn::average_pool::AveragePool;
        use crate::nn::global_average_pool::GlobalAveragePool;
        use std::time::Instant;
        let best = |f: &dyn Fn()| {
            f();
            (0..10)
                .map(|_| {
                    let t = Instant::now();
                    f();
                    t.elapsed().as_secs_f64()
                })
                .fold(f64::INFINITY, f64::min)
        };
        // (name, shape, kernel, stride, pads)
        let cases: [(&str, [usize; 4], i64, i64, i64); 4] = [
            ("resnet maxpool", [1, 64, 112, 112], 3, 2, 1),
            ("googlenet maxpool s1", [1, 480, 14, 14], 3, 1, 1),
            ("squeezenet maxpool", [1, 96, 109, 109], 3, 2, 0),
            ("googlenet maxpool s2", [1, 192, 56, 56], 3, 2, 1),
        ];
        for (name, shape, k, s, p) in cases {
            let a = attrs(
                NAME,
                vec![
                    ("kernel_shape", ints(&[k, k])),
                    ("strides", ints(&[s, s])),
                    ("pads", ints(&[p, p, p, p])),
                ],
            );
            let generic = MaxPool::parse(&a).unwrap();
            let fast = MaxPool {
                indices: false,
                ..generic.clone()
            };
            let n: usize = shape.iter().product();
            let xt = Tensor::from_vec(shape.to_vec(), rnd(n, 1)).unwrap();
            let tg = best(&|| {
                generic.eval(&Inputs::new(NAME, &[Some(&xt)])).unwrap();
            });
            let tf = best(&|| {
                fast.eval(&Inputs::new(NAME, &[Some(&xt)])).unwrap();
            });
            let ap = AveragePool::parse(&attrs(
                "AveragePool",
                vec![
                    ("kernel_shape", ints(&[k, k])),
                    ("strides", ints(&[s, s])),
                    ("pads", ints(&[p, p, p, p])),
                ],
            ))
            .unwrap();
            let xd = Tensor::from_vec(
                shape.to_vec(),
                rnd(n, 1).iter().map(|&v| v as f64).collect(),
            )
            .unwrap();
            let ta64 = best(&|| {
                ap.eval(&Inputs::new("AveragePool", &[Some(&xd)])).unwrap();
            });
            let ta = best(&|| {
                ap.eval(&Inputs::new("AveragePool", &[Some(&xt)])).unwrap();
            });
            println!(
                "{name:22} {shape:?} k{k} s{s} p{p}: MaxPool generic(+indices) {:7.1}us fast {:7.1}us ({:4.1}x, {:5.1} GB/s in) | AveragePool generic(f64) {:7.1}us fast f32 {:7.1}us",
                tg * 1e6,
                tf * 1e6,
                tg / tf,
                4.0 * n as f64 / tf / 1e9,
                ta64 * 1e6,
                ta * 1e6
            );
        }
        let xt = Tensor::from_vec(vec![1, 2048, 7, 7], rnd(2048 * 49, 2)).unwrap();
        let t = best(&|| {
            GlobalAveragePool
                .eval(&Inputs::new("GlobalAveragePool", &[Some(&xt)]))
                .unwrap();
        });
        println!("GlobalAveragePool 1x2048x7x7: {:.1}us", t * 1e6);
    }

    #[test]
    fn column_major_indices_and_ints() {
        let mp = MaxPool::parse(&attrs(
            NAME,
            vec![
                ("kernel_shape", ints(&[2, 2])),
                ("storage_order", Attr::Int(1)),
            ],
        ))
        .unwrap();
        // 2x3 plane: max 9 at (row 1, col 0): row-major 3, column-major 1.
        let x = Tensor::from_vec(vec![1, 1, 2, 3], vec![1i8, 2, 3, 9, 5, 6]).unwrap();
        let y = mp.eval(&Inputs::new(NAME, &[Some(&x)])).unwrap();
        assert_eq!(y[0].as_slice::<i8>().unwrap(), &[9, 6]);
        assert_eq!(y[1].as_slice::<i64>().unwrap(), &[1, 5]);
    }

    #[test]
    fn needs_kernel_shape() {
        assert!(MaxPool::parse(&attrs(NAME, vec![])).is_err());
        let mp = MaxPool::parse(&attrs(NAME, vec![("kernel_shape", ints(&[2]))])).unwrap();
        let x = Tensor::from_vec(vec![1, 1, 2, 2], vec![0.0f32; 4]).unwrap();
        assert!(mp.eval(&Inputs::new(NAME, &[Some(&x)])).is_err());
    }
}
