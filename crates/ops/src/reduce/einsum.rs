//! Einsum (ONNX opsets 12): Einstein summation over any number of operands, with implicit
//! output, `...` broadcasting and repeated (diagonal) indices; pairwise contractions run as
//! permute + batched matmul.
use super::common::IntElem;
use crate::util::{broadcast_dims, output, Num};
use millrace_core::{Dim, Tensor, TensorData};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

const NAME: &str = "Einsum";
/// Label ids of ellipsis dims start here (letters use their ASCII code).
const ELL: u32 = 1000;

/// One input term: letters, and where the ellipsis sits (index into `labels`) if any.
#[derive(Clone, Debug, PartialEq)]
struct Term {
    labels: Vec<u32>,
    ellipsis: Option<usize>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Einsum {
    pub equation: String,
    inputs: Vec<Term>,
    /// Explicit output term, `None` for implicit mode.
    output: Option<Term>,
}

fn parse_term(s: &str) -> Result<Term, OpError> {
    let mut labels = vec![];
    let mut ellipsis = None;
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'.' {
            if b.get(i..i + 3) != Some(b"...") || ellipsis.is_some() {
                return Err(OpError::attribute(
                    NAME,
                    "equation",
                    format!("bad ellipsis in `{s}`"),
                ));
            }
            ellipsis = Some(labels.len());
            i += 3;
        } else if c.is_ascii_alphabetic() {
            labels.push(c as u32);
            i += 1;
        } else {
            return Err(OpError::attribute(
                NAME,
                "equation",
                format!("invalid character `{}`", c as char),
            ));
        }
    }
    Ok(Term { labels, ellipsis })
}

impl Einsum {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let eq = attrs
            .string("equation")?
            .ok_or_else(|| OpError::attribute(NAME, "equation", "required but absent"))?;
        Ok(Arc::new(Einsum::parse(&eq)?))
    }

    pub fn parse(equation: &str) -> Result<Einsum, OpError> {
        let eq: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
        let (lhs, rhs) = match eq.split_once("->") {
            Some((l, r)) => (l, Some(r)),
            None => (eq.as_str(), None),
        };
        let inputs = lhs
            .split(',')
            .map(parse_term)
            .collect::<Result<Vec<_>, _>>()?;
        let output = rhs.map(parse_term).transpose()?;
        if let Some(o) = &output {
            for (i, l) in o.labels.iter().enumerate() {
                if o.labels[..i].contains(l) {
                    return Err(OpError::attribute(
                        NAME,
                        "equation",
                        "repeated output label",
                    ));
                }
                if !inputs.iter().any(|t| t.labels.contains(l)) {
                    return Err(OpError::attribute(
                        NAME,
                        "equation",
                        format!(
                            "output label `{}` is in no input",
                            char::from_u32(*l).unwrap_or('?')
                        ),
                    ));
                }
            }
        }
        Ok(Einsum {
            equation: eq.clone(),
            inputs,
            output,
        })
    }

    /// Full label lists per operand (ellipsis expanded for the given ranks) and the output
    /// label list, with the ellipsis rank.
    fn labels_for(&self, ranks: &[usize]) -> Result<(Vec<Vec<u32>>, Vec<u32>), OpError> {
        if ranks.len() != self.inputs.len() {
            return Err(OpError::invalid(
                NAME,
                format!(
                    "equation has {} operands, got {} inputs",
                    self.inputs.len(),
                    ranks.len()
                ),
            ));
        }
        let mut ell_rank = 0usize;
        for (t, &r) in self.inputs.iter().zip(ranks) {
            let n = t.labels.len();
            match t.ellipsis {
                None if r != n => {
                    return Err(OpError::invalid(
                        NAME,
                        format!("operand of rank {r} does not match term with {n} labels"),
                    ))
                }
                Some(_) if r < n => {
                    return Err(OpError::invalid(
                        NAME,
                        format!("operand rank {r} too small"),
                    ))
                }
                Some(_) => ell_rank = ell_rank.max(r - n),
                None => {}
            }
        }
        let expand = |t: &Term, r: usize| -> Vec<u32> {
            match t.ellipsis {
                None => t.labels.clone(),
                Some(p) => {
                    let k = r - t.labels.len();
                    let mut v = t.labels[..p].to_vec();
                    v.extend((ell_rank - k..ell_rank).map(|i| ELL + i as u32));
                    v.extend_from_slice(&t.labels[p..]);
                    v
                }
            }
        };
        let ins: Vec<Vec<u32>> = self
            .inputs
            .iter()
            .zip(ranks)
            .map(|(t, &r)| expand(t, r))
            .collect();
        let out = match &self.output {
            Some(o) => {
                if o.ellipsis.is_none() && ell_rank > 0 {
                    return Err(OpError::unsupported(
                        NAME,
                        "ellipsis dims in the inputs but not in the explicit output",
                    ));
                }
                expand(o, o.labels.len() + ell_rank)
            }
            None => {
                let mut v: Vec<u32> = (0..ell_rank).map(|i| ELL + i as u32).collect();
                let mut once: Vec<u32> = vec![];
                for t in &self.inputs {
                    for l in &t.labels {
                        let c: usize = self
                            .inputs
                            .iter()
                            .map(|t| t.labels.iter().filter(|x| *x == l).count())
                            .sum();
                        if c == 1 && !once.contains(l) {
                            once.push(*l);
                        }
                    }
                }
                once.sort();
                v.extend(once);
                v
            }
        };
        Ok((ins, out))
    }
}

/// Arithmetic the contraction runs in.
trait Acc: Copy + Default + Send + Sync + 'static {
    fn add(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    /// Row-major `c[m x n] = a[m x k] * b[k x n]`.
    fn matmul(m: usize, k: usize, n: usize, a: &[Self], b: &[Self], c: &mut [Self]) {
        for i in 0..m {
            for p in 0..k {
                let av = a[i * k + p];
                for j in 0..n {
                    c[i * n + j] = c[i * n + j].add(av.mul(b[p * n + j]));
                }
            }
        }
    }
}

impl Acc for f32 {
    fn add(self, o: Self) -> Self {
        self + o
    }
    fn mul(self, o: Self) -> Self {
        self * o
    }
    fn matmul(m: usize, k: usize, n: usize, a: &[Self], b: &[Self], c: &mut [Self]) {
        if m > 0 && n > 0 && k > 0 {
            millrace_kernels::gemm::matmul(m, k, n, a, b, c);
        }
    }
}

impl Acc for f64 {
    fn add(self, o: Self) -> Self {
        self + o
    }
    fn mul(self, o: Self) -> Self {
        self * o
    }
}

impl Acc for i64 {
    fn add(self, o: Self) -> Self {
        self.wrapping_add(o)
    }
    fn mul(self, o: Self) -> Self {
        self.wrapping_mul(o)
    }
}

/// An intermediate: one label per axis.
struct Work<A> {
    labels: Vec<u32>,
    shape: Vec<usize>,
    data: Vec<A>,
}

impl<A: Acc> Work<A> {
    /// Reads element at multi-index given per-axis strides (0 = broadcast).
    fn gather(shape: &[usize], strides: &[usize], src: &[A]) -> Vec<A> {
        let n: usize = shape.iter().product();
        let mut out = Vec::with_capacity(n);
        let rank = shape.len();
        let mut c = vec![0usize; rank];
        let mut off = 0usize;
        for _ in 0..n {
            out.push(src[off]);
            for ax in (0..rank).rev() {
                c[ax] += 1;
                off += strides[ax];
                if c[ax] < shape[ax] {
                    break;
                }
                off -= strides[ax] * c[ax];
                c[ax] = 0;
            }
        }
        out
    }

    fn strides(&self) -> Vec<usize> {
        millrace_core::strides_of(&self.shape)
    }

    /// Takes diagonals until every label is unique.
    fn diagonalize(self) -> Result<Work<A>, OpError> {
        let mut w = self;
        loop {
            let dup = (0..w.labels.len())
                .find_map(|j| (0..j).find(|&i| w.labels[i] == w.labels[j]).map(|i| (i, j)));
            let Some((i, j)) = dup else { return Ok(w) };
            if w.shape[i] != w.shape[j] {
                return Err(OpError::invalid(
                    NAME,
                    "repeated label with different sizes",
                ));
            }
            let st = w.strides();
            let mut labels = vec![];
            let mut shape = vec![];
            let mut strides = vec![];
            for ax in 0..w.labels.len() {
                if ax == j {
                    continue;
                }
                labels.push(w.labels[ax]);
                shape.push(w.shape[ax]);
                strides.push(if ax == i { st[i] + st[j] } else { st[ax] });
            }
            let data = Self::gather(&shape, &strides, &w.data);
            w = Work {
                labels,
                shape,
                data,
            };
        }
    }

    /// Sums out every label not in `keep`.
    fn sum_except(self, keep: &[u32]) -> Work<A> {
        if self.labels.iter().all(|l| keep.contains(l)) {
            return self;
        }
        let mask: Vec<bool> = self.labels.iter().map(|l| !keep.contains(l)).collect();
        let labels: Vec<u32> = self
            .labels
            .iter()
            .filter(|l| keep.contains(l))
            .copied()
            .collect();
        let shape: Vec<usize> = self
            .shape
            .iter()
            .zip(&mask)
            .filter(|(_, &m)| !m)
            .map(|(d, _)| *d)
            .collect();
        let mut data = vec![A::default(); shape.iter().product()];
        super::common::for_each_reduced(&self.shape, &mask, |i, o| {
            data[o] = data[o].add(self.data[i]);
        });
        Work {
            labels,
            shape,
            data,
        }
    }

    /// Permutes to `order` (a permutation of the labels), broadcasting size-1 axes to the
    /// sizes in `sizes` where given.
    fn permute(&self, order: &[u32], sizes: &[usize]) -> Vec<A> {
        let st = self.strides();
        let mut strides = vec![];
        for (k, l) in order.iter().enumerate() {
            let ax = self.labels.iter().position(|x| x == l).unwrap_or(0);
            strides.push(if self.shape[ax] == 1 && sizes[k] != 1 {
                0
            } else {
                st[ax]
            });
        }
        Self::gather(sizes, &strides, &self.data)
    }
}

fn size_of(sizes: &[(u32, usize)], l: u32) -> usize {
    sizes
        .iter()
        .find(|(x, _)| *x == l)
        .map(|p| p.1)
        .unwrap_or(1)
}

/// Contracts two operands, keeping the labels in `keep`.
fn contract<A: Acc>(a: Work<A>, b: Work<A>, keep: &[u32], sizes: &[(u32, usize)]) -> Work<A> {
    let a = a.sum_except(&[keep, &b.labels[..]].concat());
    let b = b.sum_except(&[keep, &a.labels[..]].concat());
    let batch: Vec<u32> = a
        .labels
        .iter()
        .filter(|l| b.labels.contains(l) && keep.contains(l))
        .copied()
        .collect();
    let contr: Vec<u32> = a
        .labels
        .iter()
        .filter(|l| b.labels.contains(l) && !keep.contains(l))
        .copied()
        .collect();
    let a_only: Vec<u32> = a
        .labels
        .iter()
        .filter(|l| !b.labels.contains(l))
        .copied()
        .collect();
    let b_only: Vec<u32> = b
        .labels
        .iter()
        .filter(|l| !a.labels.contains(l))
        .copied()
        .collect();
    let sz = |ls: &[u32]| ls.iter().map(|&l| size_of(sizes, l)).collect::<Vec<_>>();
    let prod = |ls: &[u32]| ls.iter().map(|&l| size_of(sizes, l)).product::<usize>();
    let a_order = [&batch[..], &a_only, &contr].concat();
    let b_order = [&batch[..], &contr, &b_only].concat();
    let ad = a.permute(&a_order, &sz(&a_order));
    let bd = b.permute(&b_order, &sz(&b_order));
    let (nb, m, k, n) = (prod(&batch), prod(&a_only), prod(&contr), prod(&b_only));
    let mut c = vec![A::default(); nb * m * n];
    for i in 0..nb {
        A::matmul(
            m,
            k,
            n,
            &ad[i * m * k..(i + 1) * m * k],
            &bd[i * k * n..(i + 1) * k * n],
            &mut c[i * m * n..(i + 1) * m * n],
        );
    }
    let labels = [&batch[..], &a_only, &b_only].concat();
    Work {
        shape: sz(&labels),
        labels,
        data: c,
    }
}

impl Einsum {
    fn run<A: Acc>(
        &self,
        ops: Vec<(Vec<usize>, Vec<A>)>,
        ins: &[Vec<u32>],
        out: &[u32],
        sizes: &[(u32, usize)],
    ) -> Result<(Vec<usize>, Vec<A>), OpError> {
        let mut works: Vec<Work<A>> = vec![];
        for (k, (shape, data)) in ops.into_iter().enumerate() {
            let w = Work {
                labels: ins[k].clone(),
                shape,
                data,
            }
            .diagonalize()?;
            // Labels needed later: output or any other operand.
            let mut keep: Vec<u32> = out.to_vec();
            for (j, l) in ins.iter().enumerate() {
                if j != k {
                    keep.extend(l);
                }
            }
            works.push(w.sum_except(&keep));
        }
        let mut iter = works.into_iter().enumerate();
        let Some((_, mut acc)) = iter.next() else {
            return Err(OpError::invalid(NAME, "no operands"));
        };
        for (k, w) in iter {
            let mut keep: Vec<u32> = out.to_vec();
            for l in ins.iter().skip(k + 1) {
                keep.extend(l);
            }
            acc = contract(acc, w, &keep, sizes);
        }
        let acc = acc.sum_except(out);
        let shape: Vec<usize> = out.iter().map(|&l| size_of(sizes, l)).collect();
        let data = acc.permute(out, &shape);
        Ok((shape, data))
    }

    /// Size of every label, checking consistency (ellipsis dims broadcast).
    fn sizes(&self, ins: &[Vec<u32>], shapes: &[&[usize]]) -> Result<Vec<(u32, usize)>, OpError> {
        let mut sizes: Vec<(u32, usize)> = vec![];
        for (ls, sh) in ins.iter().zip(shapes) {
            for (&l, &d) in ls.iter().zip(sh.iter()) {
                match sizes.iter_mut().find(|(x, _)| *x == l) {
                    None => sizes.push((l, d)),
                    Some((_, cur)) => {
                        if *cur != d {
                            if l >= ELL && (*cur == 1 || d == 1) {
                                *cur = (*cur).max(d);
                                if d == 0 {
                                    *cur = 0;
                                }
                            } else {
                                return Err(OpError::invalid(
                                    NAME,
                                    format!("label sizes {cur} and {d} disagree"),
                                ));
                            }
                        }
                    }
                }
            }
        }
        Ok(sizes)
    }
}

fn to_acc<T: Num, A>(v: &[T], f: impl Fn(T) -> A) -> Vec<A> {
    v.iter().map(|&x| f(x)).collect()
}

impl Op for Einsum {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        let n = self.inputs.len();
        let tys: Vec<Option<&ValueType>> = (0..n).map(|i| ctx.opt_input(i)).collect();
        let shapes: Option<Vec<&Vec<Dim>>> = tys
            .iter()
            .map(|t| t.and_then(|t| t.shape.as_ref()))
            .collect();
        let Some(shapes) = shapes else {
            return Ok(vec![ValueType {
                dtype: x.dtype,
                shape: None,
            }]);
        };
        let ranks: Vec<usize> = shapes.iter().map(|s| s.len()).collect();
        let (ins, out) = self.labels_for(&ranks)?;
        let mut dims = vec![];
        for &l in &out {
            let cands: Vec<Vec<Dim>> = ins
                .iter()
                .zip(&shapes)
                .flat_map(|(ls, sh)| {
                    ls.iter()
                        .zip(sh.iter())
                        .filter(|(x, _)| **x == l)
                        .map(|(_, d)| vec![d.clone()])
                })
                .collect();
            let refs: Vec<&[Dim]> = cands.iter().map(|v| &v[..]).collect();
            let d = broadcast_dims(NAME, &refs)?;
            dims.push(d.into_iter().next().unwrap_or(Dim::Known(1)));
        }
        Ok(vec![ValueType {
            dtype: x.dtype,
            shape: Some(dims),
        }])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        let mut c = Cost::movement(inputs, outputs);
        // A pairwise contraction of [m,k] x [k,n] costs 2mkn; estimate with in x out sizes.
        let a = inputs.first().and_then(|t| t.numel()).unwrap_or(0) as u64;
        let o = outputs.first().and_then(|t| t.numel()).unwrap_or(0) as u64;
        let b = inputs.get(1).and_then(|t| t.numel()).unwrap_or(0) as u64;
        c.flops = if inputs.len() >= 2 && o > 0 {
            let k2 = (a.saturating_mul(b)) / o.max(1);
            2 * ((k2 as f64).sqrt() as u64).max(1) * o
        } else {
            a
        };
        c
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let n = self.inputs.len();
        let ts: Vec<&Tensor> = (0..n).map(|i| inputs.req(i)).collect::<Result<_, _>>()?;
        let dt = ts[0].dtype();
        if ts.iter().any(|t| t.dtype() != dt) {
            return Err(OpError::invalid(
                NAME,
                "all inputs must have the same dtype",
            ));
        }
        let ranks: Vec<usize> = ts.iter().map(|t| t.rank()).collect();
        let (ins, out) = self.labels_for(&ranks)?;
        let shapes: Vec<&[usize]> = ts.iter().map(|t| t.shape()).collect();
        let sizes = self.sizes(&ins, &shapes)?;
        macro_rules! go {
            ($A:ty, $conv:expr, $back:expr, $T:ty) => {{
                let ops = ts
                    .iter()
                    .map(|t| {
                        let v = crate::util::typed::<$T>(NAME, t)?;
                        Ok((t.shape().to_vec(), to_acc(v, $conv)))
                    })
                    .collect::<Result<Vec<_>, OpError>>()?;
                let (shape, data) = self.run::<$A>(ops, &ins, &out, &sizes)?;
                output(
                    NAME,
                    shape,
                    data.into_iter().map($back).collect::<Vec<$T>>(),
                )?
            }};
        }
        macro_rules! int {
            ($T:ty) => {
                go!(
                    i64,
                    |x: $T| x.to_i128() as i64,
                    |v: i64| <$T>::wrap_i128(v as i128),
                    $T
                )
            };
        }
        use millrace_core::{bf16, f16};
        let y = match ts[0].data() {
            TensorData::F32(_) => go!(f32, |x: f32| x, |v: f32| v, f32),
            TensorData::F64(_) => go!(f64, |x: f64| x, |v: f64| v, f64),
            TensorData::F16(_) => go!(f32, |x: f16| x.to_f32(), f16::from_f32, f16),
            TensorData::BF16(_) => go!(f32, |x: bf16| x.to_f32(), bf16::from_f32, bf16),
            TensorData::I8(_) => int!(i8),
            TensorData::I16(_) => int!(i16),
            TensorData::I32(_) => int!(i32),
            TensorData::I64(_) => int!(i64),
            TensorData::U8(_) => int!(u8),
            TensorData::U16(_) => int!(u16),
            TensorData::U32(_) => int!(u32),
            TensorData::U64(_) => int!(u64),
            other => {
                return Err(OpError::unsupported(
                    NAME,
                    format!("dtype {}", other.dtype()),
                ))
            }
        };
        Ok(vec![y])
    }

    fn describe(&self) -> String {
        format!("equation={}", self.equation)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::from_vec(shape.to_vec(), v.to_vec()).unwrap()
    }

    fn run(eq: &str, xs: &[&Tensor]) -> Result<Tensor, OpError> {
        let op = Einsum::parse(eq)?;
        let items: Vec<Option<&Tensor>> = xs.iter().map(|t| Some(*t)).collect();
        Ok(op.eval(&Inputs::new(NAME, &items))?.remove(0))
    }

    type Case<'a> = (&'static str, Vec<&'a Tensor>, Vec<usize>, Vec<f32>);

    #[test]
    fn cases() {
        let a = f(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let b = f(&[3, 2], &[1., 0., 0., 1., 1., 1.]);
        let sq = f(&[2, 2], &[1., 2., 3., 4.]);
        let v = f(&[3], &[1., 2., 3.]);
        let cases: Vec<Case> = vec![
            (
                "ij,jk->ik",
                vec![&a, &b],
                vec![2, 2],
                vec![4., 5., 10., 11.],
            ),
            ("ij,jk", vec![&a, &b], vec![2, 2], vec![4., 5., 10., 11.]),
            ("ij->ji", vec![&a], vec![3, 2], vec![1., 4., 2., 5., 3., 6.]),
            ("ji", vec![&a], vec![3, 2], vec![1., 4., 2., 5., 3., 6.]),
            ("ii->i", vec![&sq], vec![2], vec![1., 4.]),
            ("ii", vec![&sq], vec![], vec![5.]),
            ("i,i->", vec![&v, &v], vec![], vec![14.]),
            ("ij->", vec![&a], vec![], vec![21.]),
            ("ij->j", vec![&a], vec![3], vec![5., 7., 9.]),
            (
                "i,j->ij",
                vec![&v, &v],
                vec![3, 3],
                vec![1., 2., 3., 2., 4., 6., 3., 6., 9.],
            ),
            ("...j,j->...", vec![&a, &v], vec![2], vec![14., 32.]),
            (
                "ij,jk,kl->il",
                vec![&a, &b, &sq],
                vec![2, 2],
                vec![19., 28., 43., 64.],
            ),
        ];
        for (eq, xs, shape, want) in cases {
            let y = run(eq, &xs).unwrap();
            assert_eq!(y.shape(), &shape[..], "{eq}");
            assert_eq!(y.as_slice::<f32>().unwrap(), &want[..], "{eq}");
        }
    }

    #[test]
    fn batched_and_ints() {
        // bhid,bhjd->bhij with b=h=1: q k^T.
        let q = f(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
        let k = f(&[1, 1, 2, 2], &[1., 0., 0., 1.]);
        let y = run("bhid,bhjd->bhij", &[&q, &k]).unwrap();
        assert_eq!(y.shape(), &[1, 1, 2, 2]);
        assert_eq!(y.as_slice::<f32>().unwrap(), &[1., 2., 3., 4.]);
        // Ellipsis broadcasting: [2,1,2] x [3,2] batch dims broadcast.
        let x = f(&[2, 1, 2], &[1., 2., 3., 4.]);
        let w = f(&[3, 2], &[1., 1., 2., 2., 0., 1.]);
        let y = run("...i,...i->...", &[&x, &w]).unwrap();
        assert_eq!(y.shape(), &[2, 3]);
        assert_eq!(y.as_slice::<f32>().unwrap(), &[3., 6., 2., 7., 14., 4.]);
        let ai = Tensor::from_vec(vec![2, 2], vec![1i64, 2, 3, 4]).unwrap();
        let y = run("ij,jk->ik", &[&ai, &ai]).unwrap();
        assert_eq!(y.as_slice::<i64>().unwrap(), &[7, 10, 15, 22]);
        // Empty contraction dim gives zeros.
        let e = f(&[2, 0], &[]);
        let e2 = f(&[0, 3], &[]);
        let y = run("ij,jk->ik", &[&e, &e2]).unwrap();
        assert_eq!(y.as_slice::<f32>().unwrap(), &[0.; 6]);
    }

    #[test]
    fn errors_and_infer() {
        let a = f(&[2, 3], &[0.; 6]);
        assert!(run("ij,jk->ik", &[&a, &a]).is_err());
        assert!(run("ijk->i", &[&a]).is_err());
        assert!(run("ij->k", &[&a]).is_err());
        assert!(run("i.j", &[&a]).is_err());
        assert!(run("ij,jk->ik", &[&a]).is_err());
        let op = Einsum::parse("bij,bjk->bik").unwrap();
        let types = [
            Some(ValueType::new(
                millrace_core::DType::F32,
                vec![Dim::Sym("b".into()), Dim::Known(4), Dim::Known(5)],
            )),
            Some(ValueType::concrete(millrace_core::DType::F32, &[1, 5, 6])),
        ];
        let t = op
            .infer(&InferCtx::new(NAME, &types, &[None, None]))
            .unwrap();
        assert_eq!(
            t[0].shape.as_ref().unwrap(),
            &vec![Dim::Sym("b".into()), Dim::Known(4), Dim::Known(6)]
        );
    }
}
