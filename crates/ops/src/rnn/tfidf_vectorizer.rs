//! TfIdfVectorizer (ONNX opset 9): counts the n-grams of a pool (integers or strings)
//! found in each row of the input, with skips between n-gram items, and weights the
//! counts (TF, IDF or TFIDF).
use crate::util::output;
use millrace_core::{DType, Dim, Tensor, TensorData};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

const NAME: &str = "TfIdfVectorizer";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Tf,
    Idf,
    TfIdf,
}

/// An n-gram's items.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    Int(i64),
    Str(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct TfIdfVectorizer {
    pub mode: Mode,
    pub min_gram: usize,
    pub max_gram: usize,
    pub max_skip: usize,
    /// Loaded n-grams (sizes within [min_gram, max_gram]) to their output coordinate.
    pub grams: HashMap<Vec<Key>, usize>,
    pub strings: bool,
    pub output_size: usize,
    pub weights: Option<Vec<f32>>,
}

impl TfIdfVectorizer {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let mode_s = attrs
            .string("mode")?
            .ok_or_else(|| OpError::attribute(NAME, "mode", "required but absent"))?;
        let mode = match mode_s.as_str() {
            "TF" => Mode::Tf,
            "IDF" => Mode::Idf,
            "TFIDF" => Mode::TfIdf,
            _ => {
                return Err(OpError::attribute(
                    NAME,
                    "mode",
                    format!("unknown mode `{mode_s}`"),
                ))
            }
        };
        let nonneg = |name: &str, v: i64| -> Result<usize, OpError> {
            usize::try_from(v).map_err(|_| OpError::attribute(NAME, name, "must be >= 0"))
        };
        let min_gram = nonneg("min_gram_length", attrs.req_int("min_gram_length")?)?;
        let max_gram = nonneg("max_gram_length", attrs.req_int("max_gram_length")?)?;
        let max_skip = nonneg("max_skip_count", attrs.req_int("max_skip_count")?)?;
        if min_gram < 1 || max_gram < min_gram {
            return Err(OpError::attribute(
                NAME,
                "min_gram_length",
                "need 1 <= min_gram_length <= max_gram_length",
            ));
        }
        let counts = attrs
            .ints("ngram_counts")?
            .ok_or_else(|| OpError::attribute(NAME, "ngram_counts", "required but absent"))?;
        let indexes = attrs
            .ints("ngram_indexes")?
            .ok_or_else(|| OpError::attribute(NAME, "ngram_indexes", "required but absent"))?;
        let weights = attrs.floats("weights")?;
        let pool_i = attrs.ints("pool_int64s")?;
        let pool_s = attrs.strings("pool_strings")?;
        let (pool, strings): (Vec<Key>, bool) = match (pool_i, pool_s) {
            (Some(p), None) => (p.into_iter().map(Key::Int).collect(), false),
            (None, Some(p)) => (p.into_iter().map(Key::Str).collect(), true),
            _ => {
                return Err(OpError::attribute(
                    NAME,
                    "pool_int64s",
                    "exactly one of pool_int64s and pool_strings must be set",
                ))
            }
        };
        let indexes: Vec<usize> = indexes
            .iter()
            .map(|&i| nonneg("ngram_indexes", i))
            .collect::<Result<_, _>>()?;
        let output_size = indexes.iter().max().map_or(0, |m| m + 1);
        // The n-grams of size k occupy pool[counts[k-1]..counts[k]].
        let mut grams = HashMap::new();
        let mut id = 0usize;
        for (i, &start) in counts.iter().enumerate() {
            let size = i + 1;
            let end = counts.get(i + 1).copied().unwrap_or(pool.len() as i64);
            if start < 0 || end < start || end as usize > pool.len() {
                return Err(OpError::attribute(
                    NAME,
                    "ngram_counts",
                    format!("bad pool range {start}..{end}"),
                ));
            }
            let items = &pool[start as usize..end as usize];
            if items.len() % size != 0 {
                return Err(OpError::attribute(
                    NAME,
                    "ngram_counts",
                    format!("{} items do not make whole {size}-grams", items.len()),
                ));
            }
            for g in items.chunks(size) {
                if (min_gram..=max_gram).contains(&size) {
                    let out = *indexes.get(id).ok_or_else(|| {
                        OpError::attribute(NAME, "ngram_indexes", "fewer entries than n-grams")
                    })?;
                    grams.insert(g.to_vec(), out);
                }
                id += 1;
            }
        }
        if let Some(w) = &weights {
            if mode != Mode::Tf {
                // The spec scales the i-th pool n-gram by weights[i]; implementations index
                // weights by output coordinate. They agree when ngram_indexes is 0, 1, 2...
                if indexes.iter().enumerate().any(|(i, &o)| i != o) {
                    return Err(OpError::unsupported(
                        NAME,
                        "weights with a non-identity ngram_indexes",
                    ));
                }
                if w.len() != output_size {
                    return Err(OpError::attribute(
                        NAME,
                        "weights",
                        format!("{} weights for {output_size} outputs", w.len()),
                    ));
                }
            }
        }
        Ok(Arc::new(TfIdfVectorizer {
            mode,
            min_gram,
            max_gram,
            max_skip,
            grams,
            strings,
            output_size,
            weights,
        }))
    }

    fn keys(&self, x: &Tensor) -> Result<Vec<Key>, OpError> {
        Ok(match (x.data(), self.strings) {
            (TensorData::String(v), true) => v.iter().cloned().map(Key::Str).collect(),
            (TensorData::I32(_) | TensorData::I64(_), false) => crate::util::ints_of(NAME, x)?
                .into_iter()
                .map(Key::Int)
                .collect(),
            (d, _) => {
                return Err(OpError::invalid(
                    NAME,
                    format!("input dtype {} does not match the pool", d.dtype()),
                ))
            }
        })
    }

    /// Counts the n-grams of one row into `freq` (one entry per output coordinate).
    fn count_row(&self, row: &[Key], freq: &mut [u64]) {
        let n = row.len();
        let mut min_size = self.min_gram;
        let mut gram = Vec::with_capacity(self.max_gram);
        for skip in 1..=self.max_skip + 1 {
            for start in 0..n {
                gram.clear();
                for size in 1..=self.max_gram {
                    let at = start + (size - 1) * skip;
                    let Some(item) = row.get(at) else { break };
                    gram.push(item.clone());
                    if size >= min_size {
                        if let Some(&o) = self.grams.get(&gram) {
                            if let Some(f) = freq.get_mut(o) {
                                *f += 1;
                            }
                        }
                    }
                }
            }
            // Unigrams do not depend on the skip: count them once.
            if min_size == 1 {
                min_size = 2;
                if min_size > self.max_gram {
                    break;
                }
            }
        }
    }
}

impl Op for TfIdfVectorizer {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        let shape = match x.shape.as_deref() {
            Some([]) | Some([_]) => Some(vec![Dim::Known(self.output_size)]),
            Some([b, _]) => Some(vec![b.clone(), Dim::Known(self.output_size)]),
            _ => None,
        };
        Ok(vec![ValueType {
            dtype: Some(DType::F32),
            shape,
        }])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, outputs, 1)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        let keys = self.keys(x)?;
        let (rows, cols, out_shape) = match x.shape() {
            [] => (1, 1, vec![self.output_size]),
            [c] => (1, *c, vec![self.output_size]),
            [b, c] => (*b, *c, vec![*b, self.output_size]),
            s => {
                return Err(OpError::invalid(
                    NAME,
                    format!("input must be [C] or [B, C], got {s:?}"),
                ))
            }
        };
        let os = self.output_size;
        let mut freq = vec![0u64; rows * os];
        if cols > 0 {
            for (r, row) in keys.chunks(cols).enumerate().take(rows) {
                self.count_row(row, &mut freq[r * os..(r + 1) * os]);
            }
        }
        let w = self.weights.as_deref();
        let y: Vec<f32> = freq
            .iter()
            .enumerate()
            .map(|(p, &f)| {
                let wi = w.and_then(|w| w.get(p % os.max(1)).copied());
                match self.mode {
                    Mode::Tf => f as f32,
                    Mode::Idf => {
                        if f > 0 {
                            wi.unwrap_or(1.0)
                        } else {
                            0.0
                        }
                    }
                    Mode::TfIdf => wi.unwrap_or(1.0) * f as f32,
                }
            })
            .collect();
        Ok(vec![output(NAME, out_shape, y)?])
    }

    fn describe(&self) -> String {
        format!(
            "mode={:?} grams={}..={} max_skip={} outputs={}",
            self.mode, self.min_gram, self.max_gram, self.max_skip, self.output_size
        )
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use millrace_ir::Attr;

    fn op(min: i64, max: i64, skip: i64) -> Arc<dyn Op> {
        let a = Attributes::new(
            NAME,
            vec![
                ("mode".into(), Attr::String(b"TF".to_vec())),
                ("min_gram_length".into(), Attr::Int(min)),
                ("max_gram_length".into(), Attr::Int(max)),
                ("max_skip_count".into(), Attr::Int(skip)),
                ("ngram_counts".into(), Attr::Ints(vec![0, 4])),
                ("ngram_indexes".into(), Attr::Ints((0..7).collect())),
                (
                    "pool_int64s".into(),
                    Attr::Ints(vec![2, 3, 5, 4, 5, 6, 7, 8, 6, 7]),
                ),
            ],
        );
        TfIdfVectorizer::from_onnx(&a, 9).unwrap()
    }

    fn run(o: &Arc<dyn Op>, x: &Tensor) -> Vec<f32> {
        o.eval(&Inputs::new(NAME, &[Some(x)])).unwrap()[0]
            .as_slice::<f32>()
            .unwrap()
            .to_vec()
    }

    #[test]
    fn onnx_examples() {
        // From the ONNX tests tf_only_bigrams_skip0 / tf_uniandbigrams_skip5.
        let x = Tensor::from_vec(vec![12], vec![1i32, 1, 3, 3, 3, 7, 8, 6, 7, 5, 6, 8]).unwrap();
        assert_eq!(run(&op(2, 2, 0), &x), vec![0., 0., 0., 0., 1., 1., 1.]);
        let x = Tensor::from_vec(vec![2, 6], vec![1i32, 1, 3, 3, 3, 7, 8, 6, 7, 5, 6, 8]).unwrap();
        assert_eq!(
            run(&op(1, 2, 5), &x),
            vec![0., 3., 0., 0., 0., 0., 0., 0., 0., 1., 0., 1., 1., 1.]
        );
    }
}
