//! StringSplit (ONNX opset 20): splits each string on `delimiter` (or on runs of
//! whitespace when it is absent or empty), at most `maxsplit` times, padding with empty
//! strings to the longest split; also returns the number of pieces of each string.
use crate::util::{output, typed};
use millrace_core::{DType, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

const NAME: &str = "StringSplit";

#[derive(Clone, Debug, PartialEq)]
pub struct StringSplit {
    /// `None`: split on whitespace runs, as Python's `str.split()`.
    pub delimiter: Option<String>,
    /// `None`: no limit.
    pub maxsplit: Option<usize>,
}

impl StringSplit {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let delimiter = attrs.string("delimiter")?.filter(|d| !d.is_empty());
        let maxsplit = attrs
            .int("maxsplit")?
            .filter(|&m| m >= 0)
            .map(|m| m as usize);
        Ok(Arc::new(StringSplit {
            delimiter,
            maxsplit,
        }))
    }
}

/// Python's `str.isspace` for one character.
fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `s.split(None, maxsplit)`.
fn split_whitespace(s: &str, maxsplit: Option<usize>) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    let mut left = maxsplit.unwrap_or(usize::MAX);
    loop {
        rest = rest.trim_start_matches(is_space);
        if rest.is_empty() {
            return out;
        }
        if left == 0 {
            out.push(rest.to_string());
            return out;
        }
        left -= 1;
        let end = rest.find(is_space).unwrap_or(rest.len());
        out.push(rest[..end].to_string());
        rest = &rest[end..];
    }
}

impl StringSplit {
    fn split(&self, s: &str) -> Vec<String> {
        match &self.delimiter {
            None => split_whitespace(s, self.maxsplit),
            Some(d) => match self.maxsplit {
                None => s.split(d.as_str()).map(str::to_string).collect(),
                Some(m) => s
                    .splitn(m.saturating_add(1), d.as_str())
                    .map(str::to_string)
                    .collect(),
            },
        }
    }
}

impl Op for StringSplit {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        Ok(vec![
            ValueType {
                dtype: Some(DType::String),
                shape: None,
            },
            ValueType {
                dtype: Some(DType::I64),
                shape: x.shape.clone(),
            },
        ])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::movement(inputs, outputs)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        let v = typed::<String>(NAME, x)?;
        let parts: Vec<Vec<String>> = v.iter().map(|s| self.split(s)).collect();
        let width = parts.iter().map(|p| p.len()).max().unwrap_or(0);
        let mut subs = Vec::with_capacity(parts.len() * width);
        let mut lens = Vec::with_capacity(parts.len());
        for p in parts {
            lens.push(p.len() as i64);
            let pad = width - p.len();
            subs.extend(p);
            subs.extend(std::iter::repeat_n(String::new(), pad));
        }
        let mut shape = x.shape().to_vec();
        shape.push(width);
        Ok(vec![
            output(NAME, shape, subs)?,
            output(NAME, x.shape().to_vec(), lens)?,
        ])
    }

    fn describe(&self) -> String {
        format!(
            "delimiter={:?} maxsplit={:?}",
            self.delimiter, self.maxsplit
        )
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(shape: Vec<usize>, v: &[&str]) -> Tensor {
        Tensor::from_vec(shape, v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn python_split_semantics() {
        assert_eq!(split_whitespace("  a b  c ", None), vec!["a", "b", "c"]);
        assert_eq!(split_whitespace("  a b  c ", Some(1)), vec!["a", "b  c "]);
        assert_eq!(split_whitespace("   ", None), Vec::<String>::new());
        let op = StringSplit {
            delimiter: Some("-".into()),
            maxsplit: None,
        };
        assert_eq!(op.split("o-n--x-"), vec!["o", "n", "", "x", ""]);
    }

    #[test]
    fn pads_to_the_longest() {
        let op = StringSplit {
            delimiter: None,
            maxsplit: Some(2),
        };
        let x = st(vec![2], &["hello world", "the quick brown fox"]);
        let y = op.eval(&Inputs::new(NAME, &[Some(&x)])).unwrap();
        assert_eq!(
            y[0],
            st(
                vec![2, 3],
                &["hello", "world", "", "the", "quick", "brown fox"]
            )
        );
        assert_eq!(y[1].as_slice::<i64>().unwrap(), &[2, 3]);
        let e = st(vec![0], &[]);
        let y = op.eval(&Inputs::new(NAME, &[Some(&e)])).unwrap();
        assert_eq!(y[0].shape(), &[0, 0]);
    }
}
