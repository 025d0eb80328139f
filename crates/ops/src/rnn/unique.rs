//! Unique (ONNX opset 11): the distinct elements (or slices along `axis`) of a tensor,
//! sorted ascending or in order of first occurrence, with the indices of their first
//! occurrences, the inverse mapping and the counts.
use crate::util::{normalize_axis, output};
use millrace_core::{with_data, DType, Dim, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::cmp::Ordering;
use std::sync::Arc;

const NAME: &str = "Unique";

#[derive(Clone, Debug, PartialEq)]
pub struct Unique {
    pub axis: Option<i64>,
    pub sorted: bool,
}

impl Unique {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(Unique {
            axis: attrs.int("axis")?,
            sorted: attrs.int_or("sorted", 1)? != 0,
        }))
    }
}

/// Groups of equal slices: (first index, members), in ascending order of the slices.
/// Slice `i` is the elements `(o * n + i) * inner + j` for every `o`, `j`.
fn groups<T: PartialOrd>(
    v: &[T],
    outer: usize,
    n: usize,
    inner: usize,
) -> Result<Vec<(usize, Vec<usize>)>, OpError> {
    let cmp = |a: usize, b: usize| -> Option<Ordering> {
        for o in 0..outer {
            for j in 0..inner {
                let x = &v[(o * n + a) * inner + j];
                let y = &v[(o * n + b) * inner + j];
                match x.partial_cmp(y)? {
                    Ordering::Equal => continue,
                    c => return Some(c),
                }
            }
        }
        Some(Ordering::Equal)
    };
    // NaN makes the order partial; numpy's treatment of it differs across versions.
    if v.iter().any(|x| x.partial_cmp(x).is_none()) {
        return Err(OpError::unsupported(NAME, "NaN values"));
    }
    let mut order: Vec<usize> = (0..n).collect();
    // Stable: equal slices keep their input order, so the first of a run is the first
    // occurrence.
    order.sort_by(|&a, &b| cmp(a, b).unwrap_or(Ordering::Equal));
    let mut out: Vec<(usize, Vec<usize>)> = Vec::new();
    for i in order {
        match out.last_mut() {
            Some((first, members)) if cmp(*first, i) == Some(Ordering::Equal) => members.push(i),
            _ => out.push((i, vec![i])),
        }
    }
    Ok(out)
}

impl Op for Unique {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        // The number of distinct values depends on the data: Y, indices and counts have
        // an unknown length (rank 1 for the last two).
        let count = None;
        let inverse = match (self.axis, x.shape.as_ref()) {
            (Some(a), Some(s)) if !s.is_empty() => {
                let ax = normalize_axis(NAME, a, s.len())?;
                Some(vec![s[ax].clone()])
            }
            (None, Some(s)) => {
                let known: Option<usize> = s.iter().map(|d| d.known()).product();
                known.map(|n| vec![Dim::Known(n)])
            }
            _ => None,
        };
        let i64t = |shape| ValueType {
            dtype: Some(DType::I64),
            shape,
        };
        Ok(vec![
            ValueType {
                dtype: x.dtype,
                shape: None,
            },
            i64t(count.clone()),
            i64t(inverse),
            i64t(count),
        ])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, outputs, 8)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        let shape = x.shape();
        let (outer, n, inner, ax) = match self.axis {
            None => (1, x.len(), 1, None),
            Some(a) => {
                if shape.is_empty() {
                    return Err(OpError::invalid(NAME, "axis given for a scalar input"));
                }
                let ax = normalize_axis(NAME, a, shape.len())?;
                let outer: usize = shape[..ax].iter().product();
                let inner: usize = shape[ax + 1..].iter().product();
                (outer, shape[ax], inner, Some(ax))
            }
        };
        if x.dtype().is_narrow() {
            // Their derived order compares bit patterns, not values.
            return Err(OpError::unsupported(NAME, format!("dtype {}", x.dtype())));
        }
        let mut gs = with_data!(x.data(), v => groups(v, outer, n, inner))?;
        if !self.sorted {
            gs.sort_by_key(|g| g.0);
        }
        let k = gs.len();
        let mut inverse = vec![0i64; n];
        for (pos, (_, members)) in gs.iter().enumerate() {
            for &m in members {
                inverse[m] = pos as i64;
            }
        }
        let indices: Vec<i64> = gs.iter().map(|g| g.0 as i64).collect();
        let counts: Vec<i64> = gs.iter().map(|g| g.1.len() as i64).collect();
        let (y_shape, flat): (Vec<usize>, Vec<usize>) = match ax {
            None => (vec![k], gs.iter().map(|g| g.0).collect()),
            Some(a) => {
                let mut s = shape.to_vec();
                s[a] = k;
                let mut idx = Vec::with_capacity(outer * k * inner);
                for o in 0..outer {
                    for g in &gs {
                        for j in 0..inner {
                            idx.push((o * n + g.0) * inner + j);
                        }
                    }
                }
                (s, idx)
            }
        };
        let data = x
            .data()
            .gather(flat.into_iter())
            .ok_or_else(|| OpError::invalid(NAME, "index out of range"))?;
        let y = Tensor::new(y_shape, data).map_err(|e| OpError::tensor(NAME, e))?;
        Ok(vec![
            y,
            output(NAME, vec![k], indices)?,
            output(NAME, vec![n], inverse)?,
            output(NAME, vec![k], counts)?,
        ])
    }

    fn describe(&self) -> String {
        match self.axis {
            Some(a) => format!("axis={a} sorted={}", self.sorted as i32),
            None => format!("sorted={}", self.sorted as i32),
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(op: &Unique, x: &Tensor) -> Vec<Tensor> {
        op.eval(&Inputs::new(NAME, &[Some(x)])).unwrap()
    }

    fn ints(t: &Tensor) -> Vec<i64> {
        t.as_slice::<i64>().unwrap().to_vec()
    }

    #[test]
    fn spec_examples() {
        // Example 1: unsorted.
        let x = Tensor::from_vec(vec![6], vec![2.0f32, 1., 1., 3., 4., 3.]).unwrap();
        let o = run(
            &Unique {
                axis: None,
                sorted: false,
            },
            &x,
        );
        assert_eq!(o[0].as_slice::<f32>().unwrap(), &[2., 1., 3., 4.]);
        assert_eq!(ints(&o[1]), vec![0, 1, 3, 4]);
        assert_eq!(ints(&o[2]), vec![0, 1, 1, 2, 3, 2]);
        assert_eq!(ints(&o[3]), vec![1, 2, 2, 1]);
        // Example 2: sorted, flattened.
        let x = Tensor::from_vec(vec![2, 2], vec![1i32, 3, 2, 3]).unwrap();
        let o = run(
            &Unique {
                axis: None,
                sorted: true,
            },
            &x,
        );
        assert_eq!(o[0].as_slice::<i32>().unwrap(), &[1, 2, 3]);
        assert_eq!(ints(&o[1]), vec![0, 2, 1]);
        assert_eq!(ints(&o[2]), vec![0, 2, 1, 2]);
        assert_eq!(ints(&o[3]), vec![1, 1, 2]);
        // Example 4: axis 1 of a 2x4x2 tensor.
        let x = Tensor::from_vec(
            vec![2, 4, 2],
            vec![
                1., 1., 0., 1., 2., 1., 0., 1., 1., 1., 0., 1., 2., 1., 0., 1.,
            ],
        )
        .unwrap();
        let o = run(
            &Unique {
                axis: Some(1),
                sorted: true,
            },
            &x,
        );
        assert_eq!(o[0].shape(), &[2, 3, 2]);
        assert_eq!(
            o[0].as_slice::<f64>().unwrap(),
            &[0., 1., 1., 1., 2., 1., 0., 1., 1., 1., 2., 1.]
        );
        assert_eq!(ints(&o[1]), vec![1, 0, 2]);
        assert_eq!(ints(&o[2]), vec![1, 0, 2, 0]);
        assert_eq!(ints(&o[3]), vec![2, 1, 1]);
    }

    #[test]
    fn strings_and_nan() {
        let x = Tensor::from_vec(
            vec![3],
            vec!["b".to_string(), "a".to_string(), "b".to_string()],
        )
        .unwrap();
        let o = run(
            &Unique {
                axis: None,
                sorted: true,
            },
            &x,
        );
        assert_eq!(
            o[0].as_slice::<String>().unwrap(),
            &["a".to_string(), "b".to_string()]
        );
        let x = Tensor::from_vec(vec![2], vec![1.0f32, f32::NAN]).unwrap();
        assert!(Unique {
            axis: None,
            sorted: true
        }
        .eval(&Inputs::new(NAME, &[Some(&x)]))
        .unwrap_err()
        .is_unsupported());
    }
}
