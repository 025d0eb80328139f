//! Cutting a batch into parts along dimension 0 and joining the parts' outputs back: what
//! data parallelism does around a model (CPU thread groups in `runtime::multi`, simulated
//! cards in `npu::multi`). Not an ONNX op.

use std::ops::Range;

use millrace_core::Tensor;
use millrace_ir::{Inputs, Op};

use crate::tensor::concat::Concat;

/// Rows `r` of `t` along dimension 0 (`name` is for messages).
pub fn slice_rows(name: &str, t: &Tensor, r: &Range<usize>) -> Result<Tensor, String> {
    let Some(&n) = t.shape().first() else {
        return Err(format!("`{name}` is a scalar: it has no rows to split"));
    };
    if r.end > n || r.start > r.end {
        return Err(format!(
            "`{name}` has {n} rows; rows {}..{} were asked for",
            r.start, r.end
        ));
    }
    let row: usize = t.shape()[1..].iter().product();
    let data = t
        .data()
        .gather(r.start * row..r.end * row)
        .ok_or_else(|| format!("`{name}`: rows out of range"))?;
    let mut shape = t.shape().to_vec();
    shape[0] = r.len();
    Tensor::new(shape, data).map_err(|e| format!("`{name}`: {e}"))
}

/// Joins the parts' outputs along dimension 0, output by output (names and order from the
/// first part).
pub fn concat_rows(parts: Vec<Vec<(String, Tensor)>>) -> Result<Vec<(String, Tensor)>, String> {
    let Some(first) = parts.first() else {
        return Ok(Vec::new());
    };
    let names: Vec<String> = first.iter().map(|(n, _)| n.clone()).collect();
    let mut columns: Vec<Vec<Tensor>> = vec![Vec::with_capacity(parts.len()); names.len()];
    for part in parts {
        if part.len() != names.len() {
            return Err("the parts returned different outputs".into());
        }
        for (col, (_, t)) in columns.iter_mut().zip(part) {
            col.push(t);
        }
    }
    let concat = Concat { axis: 0 };
    names
        .into_iter()
        .zip(columns)
        .map(|(name, mut col)| {
            if col.len() == 1 {
                return Ok((name, col.remove(0)));
            }
            if col.iter().any(|t| t.rank() == 0) {
                return Err(format!(
                    "output `{name}` is a scalar: parts of a batch cannot be joined"
                ));
            }
            let refs: Vec<Option<&Tensor>> = col.iter().map(Some).collect();
            let mut out = concat
                .eval(&Inputs::new("Concat", &refs))
                .map_err(|e| format!("joining output `{name}`: {e}"))?;
            if out.is_empty() {
                return Err(format!("joining output `{name}`: no result"));
            }
            Ok((name, out.remove(0)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_slice_and_join_back() {
        let t = Tensor::from_vec(vec![4, 2], (0..8).map(|v| v as f32).collect()).unwrap();
        let a = slice_rows("x", &t, &(0..1)).unwrap();
        let b = slice_rows("x", &t, &(1..4)).unwrap();
        assert_eq!(b.shape(), &[3, 2]);
        let joined =
            concat_rows(vec![vec![("y".to_string(), a)], vec![("y".to_string(), b)]]).unwrap();
        assert_eq!(joined[0].1.data(), t.data());
        assert!(slice_rows("x", &t, &(3..5)).unwrap_err().contains("4 rows"));
        assert!(slice_rows("s", &Tensor::scalar(1.0f32), &(0..1)).is_err());
        let mismatched = vec![vec![("y".to_string(), t.clone())], vec![]];
        assert!(concat_rows(mismatched).is_err());
    }
}
