//! Value types: dtype plus a shape that may be partly or wholly unknown.
use millrace_core::{DType, Dim};
use std::fmt;

/// What is known about a value before running: its dtype and shape, each maybe unknown.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ValueType {
    pub dtype: Option<DType>,
    /// `None`: even the rank is unknown.
    pub shape: Option<Vec<Dim>>,
}

impl ValueType {
    pub fn new(dtype: DType, shape: Vec<Dim>) -> ValueType {
        ValueType {
            dtype: Some(dtype),
            shape: Some(shape),
        }
    }

    /// A fully known type.
    pub fn concrete(dtype: DType, shape: &[usize]) -> ValueType {
        ValueType::new(dtype, shape.iter().map(|&d| Dim::Known(d)).collect())
    }

    /// Known dtype, unknown shape.
    pub fn of_dtype(dtype: DType) -> ValueType {
        ValueType {
            dtype: Some(dtype),
            shape: None,
        }
    }

    pub fn unknown() -> ValueType {
        ValueType::default()
    }

    pub fn rank(&self) -> Option<usize> {
        self.shape.as_ref().map(|s| s.len())
    }

    /// The shape if every dimension is known.
    pub fn concrete_shape(&self) -> Option<Vec<usize>> {
        self.shape.as_ref()?.iter().map(Dim::known).collect()
    }

    /// Number of elements if the shape is concrete.
    pub fn numel(&self) -> Option<usize> {
        self.concrete_shape().map(|s| s.iter().product())
    }

    /// Size in bytes if dtype and shape are known.
    pub fn size_bytes(&self) -> Option<usize> {
        Some(self.numel()? * self.dtype?.size_bytes())
    }

    /// Combines what two sources know, preferring `self` where both know.
    pub fn merge(&self, other: &ValueType) -> ValueType {
        let dtype = self.dtype.or(other.dtype);
        let shape = match (&self.shape, &other.shape) {
            (Some(a), Some(b)) if a.len() == b.len() => Some(
                a.iter()
                    .zip(b)
                    .map(|(x, y)| match (x, y) {
                        (Dim::Known(_), _) => x.clone(),
                        (_, Dim::Known(_)) => y.clone(),
                        _ => x.clone(),
                    })
                    .collect(),
            ),
            (Some(a), _) => Some(a.clone()),
            (None, b) => b.clone(),
        };
        ValueType { dtype, shape }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.dtype {
            Some(d) => write!(f, "{d}")?,
            None => f.write_str("?")?,
        }
        match &self.shape {
            Some(s) => {
                f.write_str("[")?;
                for (i, d) in s.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{d}")?;
                }
                f.write_str("]")
            }
            None => f.write_str("[?]"),
        }
    }
}
