//! StringNormalizer (ONNX opset 10): drops the elements of a `[C]` or `[1, C]` string
//! tensor that are stop words (case-sensitively or not), then lower- or upper-cases the
//! rest. An all-dropped input gives a single empty string.
//!
//! Only ASCII text is handled: case mapping beyond ASCII depends on the locale, and ONNX's
//! reference also strips accents, drops empty strings and removes stop words inside
//! space-separated elements, none of which the spec describes; those inputs are reported
//! as unsupported rather than guessed.
use crate::util::{output, typed};
use millrace_core::{DType, Dim, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

const NAME: &str = "StringNormalizer";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaseChange {
    Lower,
    Upper,
    None,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StringNormalizer {
    pub case: CaseChange,
    pub case_sensitive: bool,
    pub stopwords: Vec<String>,
}

impl StringNormalizer {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let action = attrs.string_or("case_change_action", "NONE")?;
        let case = match action.as_str() {
            "LOWER" => CaseChange::Lower,
            "UPPER" => CaseChange::Upper,
            "NONE" => CaseChange::None,
            _ => {
                return Err(OpError::attribute(
                    NAME,
                    "case_change_action",
                    format!("unknown action `{action}`"),
                ))
            }
        };
        let case_sensitive = attrs.int_or("is_case_sensitive", 0)? != 0;
        let stopwords = attrs.strings("stopwords")?.unwrap_or_default();
        let locale = attrs.string("locale")?;
        let case_matters = case != CaseChange::None || (!case_sensitive && !stopwords.is_empty());
        if let Some(l) = locale {
            let l = l.to_ascii_lowercase();
            let plain = l.is_empty() || l == "c" || l == "posix" || l.starts_with("en");
            if case_matters && !plain {
                return Err(OpError::unsupported(NAME, format!("locale `{l}`")));
            }
        }
        if stopwords.iter().any(|s| !s.is_ascii()) {
            return Err(OpError::unsupported(NAME, "non-ASCII stop words"));
        }
        Ok(Arc::new(StringNormalizer {
            case,
            case_sensitive,
            stopwords,
        }))
    }

    fn is_stop(&self, s: &str) -> bool {
        self.stopwords.iter().any(|w| {
            if self.case_sensitive {
                w == s
            } else {
                w.eq_ignore_ascii_case(s)
            }
        })
    }
}

impl Op for StringNormalizer {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        let x = ctx.input(0)?;
        // Without stop words nothing is dropped (an empty input still becomes [""]).
        let shape = match x.shape.as_ref() {
            Some(s)
                if self.stopwords.is_empty()
                    && (1..=2).contains(&s.len())
                    && matches!(s.last(), Some(Dim::Known(c)) if *c > 0) =>
            {
                Some(s.clone())
            }
            _ => None,
        };
        Ok(vec![ValueType {
            dtype: Some(DType::String),
            shape,
        }])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::movement(inputs, outputs)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let x = inputs.req(0)?;
        let v = typed::<String>(NAME, x)?;
        let two_d = match x.shape() {
            [_] => false,
            [1, _] => true,
            s => {
                return Err(OpError::invalid(
                    NAME,
                    format!("input must be [C] or [1, C], got {s:?}"),
                ))
            }
        };
        let mut out = Vec::with_capacity(v.len());
        for s in v {
            if !s.is_ascii() {
                return Err(OpError::unsupported(NAME, "non-ASCII strings"));
            }
            if self.is_stop(s) {
                if !self.case_sensitive
                    && self.case == CaseChange::None
                    && !self.stopwords.iter().any(|w| w == s)
                {
                    // ONNX's reference compares exactly when the case is left alone.
                    return Err(OpError::unsupported(
                        NAME,
                        "case-insensitive stop word without case change",
                    ));
                }
                continue;
            }
            if s.is_empty() {
                return Err(OpError::unsupported(NAME, "empty strings"));
            }
            if !self.stopwords.is_empty()
                && s.contains(' ')
                && s.split(' ').any(|w| self.is_stop(w))
            {
                return Err(OpError::unsupported(
                    NAME,
                    "stop words inside space-separated elements",
                ));
            }
            out.push(match self.case {
                CaseChange::Lower => s.to_ascii_lowercase(),
                CaseChange::Upper => s.to_ascii_uppercase(),
                CaseChange::None => s.clone(),
            });
        }
        if out.is_empty() {
            out.push(String::new());
        }
        let shape = if two_d {
            vec![1, out.len()]
        } else {
            vec![out.len()]
        };
        Ok(vec![output(NAME, shape, out)?])
    }

    fn describe(&self) -> String {
        format!(
            "case={:?} case_sensitive={} stopwords={}",
            self.case,
            self.case_sensitive,
            self.stopwords.len()
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

    fn op(case: CaseChange, case_sensitive: bool, stops: &[&str]) -> StringNormalizer {
        StringNormalizer {
            case,
            case_sensitive,
            stopwords: stops.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn drops_stop_words_and_changes_case() {
        let x = st(vec![1, 4], &["Monday", "tuesday", "monday", "Wed"]);
        let y = op(CaseChange::Upper, false, &["monday"])
            .eval(&Inputs::new(NAME, &[Some(&x)]))
            .unwrap();
        assert_eq!(y[0], st(vec![1, 2], &["TUESDAY", "WED"]));
        let y = op(CaseChange::Lower, true, &["monday"])
            .eval(&Inputs::new(NAME, &[Some(&x)]))
            .unwrap();
        assert_eq!(y[0], st(vec![1, 3], &["monday", "tuesday", "wed"]));
        let x = st(vec![2], &["monday", "monday"]);
        let y = op(CaseChange::Upper, true, &["monday"])
            .eval(&Inputs::new(NAME, &[Some(&x)]))
            .unwrap();
        assert_eq!(y[0], st(vec![1], &[""]));
    }

    #[test]
    fn ambiguous_inputs_are_unsupported() {
        let x = st(vec![1], &["héllo"]);
        assert!(op(CaseChange::None, true, &[])
            .eval(&Inputs::new(NAME, &[Some(&x)]))
            .unwrap_err()
            .is_unsupported());
        let x = st(vec![1], &["Monday"]);
        assert!(op(CaseChange::None, false, &["monday"])
            .eval(&Inputs::new(NAME, &[Some(&x)]))
            .unwrap_err()
            .is_unsupported());
    }
}
