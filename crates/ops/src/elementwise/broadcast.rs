//! Numpy multidirectional broadcasting kernels shared by the binary and ternary ops.
//!
//! Same-shape and single-element operands take a direct path; the general case merges
//! adjacent dimensions that broadcast alike and walks rows of the innermost dimension,
//! so no per-element index vector is built.
use crate::util::broadcast_all;
use millrace_ir::OpError;

/// Iteration plan for `K` inputs broadcast to a common output shape.
struct Plan<const K: usize> {
    /// Merged outer dims (all but the innermost).
    outer: Vec<usize>,
    /// Per input, element stride of each merged outer dim (0 where broadcast).
    strides: [Vec<usize>; K],
    /// Length of the merged innermost dim.
    inner: usize,
    /// Per input, stride of the innermost dim: 1, or 0 where broadcast.
    inner_stride: [usize; K],
}

impl<const K: usize> Plan<K> {
    fn new(out: &[usize], shapes: [&[usize]; K]) -> Plan<K> {
        let rank = out.len();
        // Output dims of size 1 are dropped; the rest get a broadcast flag per input.
        let mut dims: Vec<(usize, [bool; K])> = Vec::with_capacity(rank);
        for (i, &d) in out.iter().enumerate() {
            if d == 1 {
                continue;
            }
            let mut flags = [false; K];
            for (k, s) in shapes.iter().enumerate() {
                let off = rank - s.len();
                flags[k] = i < off || s[i - off] == 1;
            }
            match dims.last_mut() {
                Some((len, f)) if *f == flags => *len *= d,
                _ => dims.push((d, flags)),
            }
        }
        let (inner, inner_flags) = dims.pop().unwrap_or((1, [true; K]));
        let mut inner_stride = [0usize; K];
        let mut acc = [1usize; K];
        for k in 0..K {
            if !inner_flags[k] {
                inner_stride[k] = 1;
                acc[k] = inner;
            }
        }
        let mut strides: [Vec<usize>; K] = std::array::from_fn(|_| vec![0; dims.len()]);
        for (i, (len, flags)) in dims.iter().enumerate().rev() {
            for k in 0..K {
                if !flags[k] {
                    strides[k][i] = acc[k];
                    acc[k] *= len;
                }
            }
        }
        Plan {
            outer: dims.iter().map(|(d, _)| *d).collect(),
            strides,
            inner,
            inner_stride,
        }
    }

    /// Calls `f(offsets)` with each input's offset at the start of each output row.
    fn for_each_row(&self, mut f: impl FnMut([usize; K])) {
        let rows: usize = self.outer.iter().product();
        let r = self.outer.len();
        let mut counter = vec![0usize; r];
        let mut offs = [0usize; K];
        for _ in 0..rows {
            f(offs);
            for ax in (0..r).rev() {
                counter[ax] += 1;
                for (o, st) in offs.iter_mut().zip(&self.strides) {
                    *o += st[ax];
                }
                if counter[ax] < self.outer[ax] {
                    break;
                }
                for (o, st) in offs.iter_mut().zip(&self.strides) {
                    *o -= st[ax] * counter[ax];
                }
                counter[ax] = 0;
            }
        }
    }
}

/// `f(a, b)` elementwise with numpy broadcasting; returns the output shape and data.
pub fn map2<A, B, O>(
    op: &str,
    a: &[A],
    ash: &[usize],
    b: &[B],
    bsh: &[usize],
    f: impl Fn(&A, &B) -> O,
) -> Result<(Vec<usize>, Vec<O>), OpError> {
    if ash == bsh {
        let v = a.iter().zip(b).map(|(x, y)| f(x, y)).collect();
        return Ok((ash.to_vec(), v));
    }
    let out = broadcast_all(op, &[ash, bsh])?;
    let n: usize = out.iter().product();
    if n == 0 {
        return Ok((out, Vec::new()));
    }
    if let ([y], true) = (b, a.len() == n) {
        return Ok((out, a.iter().map(|x| f(x, y)).collect()));
    }
    if let ([x], true) = (a, b.len() == n) {
        return Ok((out, b.iter().map(|y| f(x, y)).collect()));
    }
    let plan = Plan::new(&out, [ash, bsh]);
    let inner = plan.inner;
    let mut res = Vec::with_capacity(n);
    plan.for_each_row(|[oa, ob]| match plan.inner_stride {
        [1, 1] => res.extend(
            a[oa..oa + inner]
                .iter()
                .zip(&b[ob..ob + inner])
                .map(|(x, y)| f(x, y)),
        ),
        [1, _] => {
            let y = &b[ob];
            res.extend(a[oa..oa + inner].iter().map(|x| f(x, y)))
        }
        [_, 1] => {
            let x = &a[oa];
            res.extend(b[ob..ob + inner].iter().map(|y| f(x, y)))
        }
        _ => {
            let (x, y) = (&a[oa], &b[ob]);
            res.extend((0..inner).map(|_| f(x, y)))
        }
    });
    Ok((out, res))
}

/// `f(a, b, c)` elementwise with numpy broadcasting of three inputs (values cloned).
pub fn map3<A, B, C, O>(
    op: &str,
    (a, ash): (&[A], &[usize]),
    (b, bsh): (&[B], &[usize]),
    (c, csh): (&[C], &[usize]),
    f: impl Fn(&A, &B, &C) -> O,
) -> Result<(Vec<usize>, Vec<O>), OpError> {
    let out = broadcast_all(op, &[ash, bsh, csh])?;
    let n: usize = out.iter().product();
    let mut res = Vec::with_capacity(n);
    if n == 0 {
        return Ok((out, res));
    }
    let plan = Plan::new(&out, [ash, bsh, csh]);
    let [sa, sb, sc] = plan.inner_stride;
    plan.for_each_row(|[oa, ob, oc]| {
        for i in 0..plan.inner {
            res.push(f(&a[oa + i * sa], &b[ob + i * sb], &c[oc + i * sc]));
        }
    });
    Ok((out, res))
}

/// Broadcast shape check for unidirectional broadcasting of `b` to `a` (PRelu's slope).
pub fn unidirectional(op: &str, a: &[usize], b: &[usize]) -> Result<(), OpError> {
    let out = broadcast_all(op, &[a, b])?;
    if out != a {
        return Err(OpError::invalid(
            op,
            format!("shape {b:?} cannot be broadcast to {a:?} unidirectionally"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::broadcast_index;

    fn reference(ash: &[usize], bsh: &[usize]) -> Vec<(usize, usize)> {
        let out = broadcast_all("T", &[ash, bsh]).unwrap();
        let ia = broadcast_index(&out, ash);
        let ib = broadcast_index(&out, bsh);
        ia.into_iter().zip(ib).collect()
    }

    #[test]
    fn general_broadcast_matches_index_reference() {
        let cases: &[(&[usize], &[usize])] = &[
            (&[2, 3, 4], &[4]),
            (&[2, 3, 4], &[3, 1]),
            (&[2, 1, 4], &[3, 1]),
            (&[1, 3, 1, 2], &[2, 1, 5, 1]),
            (&[2, 3, 4, 5], &[1, 3, 1, 1]),
            (&[3, 1], &[1, 1]),
            (&[1], &[2, 2]),
            (&[2, 0, 3], &[3]),
        ];
        for (ash, bsh) in cases {
            let na: usize = ash.iter().product();
            let nb: usize = bsh.iter().product();
            let a: Vec<usize> = (0..na).collect();
            let b: Vec<usize> = (0..nb).collect();
            let (_, got) = map2("T", &a, ash, &b, bsh, |&x, &y| (x, y)).unwrap();
            assert_eq!(got, reference(ash, bsh), "{ash:?} {bsh:?}");
            let (_, got3) = map3("T", (&a, ash), (&b, bsh), (&a, ash), |x, y, _| (*x, *y)).unwrap();
            assert_eq!(got3, reference(ash, bsh), "{ash:?} {bsh:?}");
        }
    }

    #[test]
    fn incompatible_shapes_are_an_error() {
        assert!(
            map2("T", &[1, 2], &[2], &[1, 2, 3], &[3], |x: &i32, y: &i32| x
                + y)
            .is_err()
        );
        assert!(unidirectional("T", &[3], &[2, 3]).is_err());
        assert!(unidirectional("T", &[2, 3], &[3]).is_ok());
    }
}
