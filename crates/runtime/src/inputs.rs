//! Seeded random inputs for a model, for `millrace run` without `--inputs` and for benchmarks.
use crate::error::Error;
use millrace_core::{DType, Dim, Tensor, TensorData};
use millrace_ir::Graph;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use std::collections::HashMap;

/// An input's name, dtype and concrete shape.
#[derive(Clone, Debug, PartialEq)]
pub struct InputSpec {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
}

/// Concrete input specs: `shapes` overrides; symbolic dims not bound there default to
/// `default_dim` (e.g. the batch size).
pub fn input_specs(
    g: &Graph,
    shapes: &HashMap<String, Vec<usize>>,
    symbols: &HashMap<String, usize>,
    default_dim: usize,
) -> Result<Vec<InputSpec>, Error> {
    g.runtime_inputs()
        .map(|v| {
            let value = g.value(v);
            let dtype = value.ty.dtype.ok_or_else(|| {
                Error::Invalid(format!(
                    "input `{}` has no declared dtype; give it with --inputs",
                    value.name
                ))
            })?;
            let shape = match shapes.get(&value.name) {
                Some(s) => s.clone(),
                None => value
                    .ty
                    .shape
                    .as_ref()
                    .ok_or_else(|| {
                        Error::Invalid(format!(
                            "input `{}` has no declared shape; give it with --shape",
                            value.name
                        ))
                    })?
                    .iter()
                    .map(|d| match d {
                        Dim::Known(n) => *n,
                        Dim::Sym(s) => symbols.get(s).copied().unwrap_or(default_dim),
                    })
                    .collect(),
            };
            Ok(InputSpec {
                name: value.name.clone(),
                dtype,
                shape,
            })
        })
        .collect()
}

/// Upper bound for integer inputs used as Gather indices (an embedding table's rows).
fn index_bound(g: &Graph, name: &str) -> Option<usize> {
    let id = g.find_value(name)?;
    g.nodes
        .iter()
        .filter(|n| n.op.name() == "Gather" && n.inputs.get(1).copied().flatten() == Some(id))
        .filter_map(|n| g.constant(n.inputs.first().copied().flatten()?))
        .filter_map(|t| t.shape().first().copied())
        .min()
}

/// Seeded random tensors for the given specs: f32 standard normal; integer inputs that
/// index an embedding are uniform over its rows; integer `*mask*` inputs are ones.
pub fn random_inputs(
    g: &Graph,
    specs: &[InputSpec],
    seed: u64,
) -> Result<Vec<(String, Tensor)>, Error> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    specs
        .iter()
        .map(|s| {
            let n: usize = s.shape.iter().product();
            let data = match s.dtype {
                DType::F32 => {
                    TensorData::F32((0..n).map(|_| StandardNormal.sample(&mut rng)).collect())
                }
                DType::F64 => {
                    TensorData::F64((0..n).map(|_| StandardNormal.sample(&mut rng)).collect())
                }
                DType::F16 => TensorData::F16(
                    (0..n)
                        .map(|_| millrace_core::f16::from_f32(StandardNormal.sample(&mut rng)))
                        .collect(),
                ),
                DType::Bool => TensorData::Bool((0..n).map(|_| rng.gen()).collect()),
                DType::I64 | DType::I32 => {
                    let vals: Vec<i64> = if s.name.to_lowercase().contains("mask") {
                        vec![1; n]
                    } else {
                        let hi = index_bound(g, &s.name).unwrap_or(2).max(1) as i64;
                        (0..n).map(|_| rng.gen_range(0..hi)).collect()
                    };
                    if s.dtype == DType::I64 {
                        TensorData::I64(vals)
                    } else {
                        TensorData::I32(vals.into_iter().map(|v| v as i32).collect())
                    }
                }
                other => {
                    return Err(Error::Invalid(format!(
                        "cannot make random {other} data for input `{}`; give it with --inputs",
                        s.name
                    )))
                }
            };
            Ok((
                s.name.clone(),
                Tensor::new(s.shape.clone(), data).map_err(|e| Error::Internal(e.to_string()))?,
            ))
        })
        .collect()
}
