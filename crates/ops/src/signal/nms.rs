//! NonMaxSuppression (ONNX opsets 10, 11): per batch and class, greedily keeps the
//! highest-scoring boxes whose IoU with every kept box is at most `iou_threshold`,
//! after dropping scores not above `score_threshold`; at most
//! `max_output_boxes_per_class` per class (0 when absent). Output i64 [selected, 3] of
//! (batch, class, box). IoU arithmetic runs in the boxes' precision.
use crate::nn::common::Float;
use crate::util::typed;
use millrace_core::{DType, Dim, Elem, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

const NAME: &str = "NonMaxSuppression";

#[derive(Clone, Debug, PartialEq)]
pub struct NonMaxSuppression {
    pub center_point_box: bool,
}

impl NonMaxSuppression {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let c = attrs.int_or("center_point_box", 0)?;
        if c != 0 && c != 1 {
            return Err(OpError::attribute(
                NAME,
                "center_point_box",
                "must be 0 or 1",
            ));
        }
        Ok(Arc::new(NonMaxSuppression {
            center_point_box: c == 1,
        }))
    }
}

fn min_max<T: Float>(a: T, b: T) -> (T, T) {
    if a >= b {
        (b, a)
    } else {
        (a, b)
    }
}

fn max<T: Float>(a: T, b: T) -> T {
    if a >= b {
        a
    } else {
        b
    }
}

fn min<T: Float>(a: T, b: T) -> T {
    if a <= b {
        a
    } else {
        b
    }
}

/// Whether `b1` suppresses `b2` (IoU strictly above the threshold).
fn suppress<T: Float>(b1: &[T], b2: &[T], center: bool, thr: T) -> bool {
    let (x1_min, x1_max, x2_min, x2_max, y1_min, y1_max, y2_min, y2_max);
    let two = T::lit(2.0);
    if !center {
        (x1_min, x1_max) = min_max(b1[1], b1[3]);
        (x2_min, x2_max) = min_max(b2[1], b2[3]);
        (y1_min, y1_max) = min_max(b1[0], b1[2]);
        (y2_min, y2_max) = min_max(b2[0], b2[2]);
    } else {
        let (w1, h1, w2, h2) = (b1[2] / two, b1[3] / two, b2[2] / two, b2[3] / two);
        x1_min = b1[0] - w1;
        x1_max = b1[0] + w1;
        x2_min = b2[0] - w2;
        x2_max = b2[0] + w2;
        y1_min = b1[1] - h1;
        y1_max = b1[1] + h1;
        y2_min = b2[1] - h2;
        y2_max = b2[1] + h2;
    }
    let ix_min = max(x1_min, x2_min);
    let ix_max = min(x1_max, x2_max);
    if ix_max <= ix_min {
        return false;
    }
    let iy_min = max(y1_min, y2_min);
    let iy_max = min(y1_max, y2_max);
    if iy_max <= iy_min {
        return false;
    }
    let inter = (ix_max - ix_min) * (iy_max - iy_min);
    if inter <= T::ZERO {
        return false;
    }
    let a1 = (x1_max - x1_min) * (y1_max - y1_min);
    let a2 = (x2_max - x2_min) * (y2_max - y2_min);
    let union = a1 + a2 - inter;
    if a1 <= T::ZERO || a2 <= T::ZERO || union <= T::ZERO {
        return false;
    }
    inter / union > thr
}

/// The first value of an optional input, if present and non-empty.
fn first_of<T: Float + Elem>(t: Option<&Tensor>) -> Result<Option<T>, OpError> {
    match t {
        None => Ok(None),
        Some(t) => Ok(T::cow(NAME, t)?.first().copied()),
    }
}

impl NonMaxSuppression {
    fn run<T: Float + Elem>(&self, inputs: &Inputs<'_>) -> Result<Vec<i64>, OpError> {
        let boxes = inputs.req(0)?;
        let scores = inputs.req(1)?;
        let &[nb, nbox, four] = boxes.shape() else {
            return Err(OpError::invalid(NAME, "boxes must have rank 3"));
        };
        let &[sb, nc, sbox] = scores.shape() else {
            return Err(OpError::invalid(NAME, "scores must have rank 3"));
        };
        if four != 4 || sb != nb || sbox != nbox {
            return Err(OpError::invalid(
                NAME,
                format!(
                    "boxes {:?} and scores {:?} do not match",
                    boxes.shape(),
                    scores.shape()
                ),
            ));
        }
        let bx = typed::<T>(NAME, boxes)?;
        let sc = typed::<T>(NAME, scores)?;
        let max_out = match inputs.opt(2) {
            Some(t) => crate::util::ints_of(NAME, t)?.first().copied(),
            None => None,
        };
        let Some(max_out) = max_out else {
            return Ok(vec![]);
        };
        let max_out = max_out.max(0) as u64;
        let iou = first_of::<T>(inputs.opt(3))?.unwrap_or(T::ZERO);
        let score_thr = first_of::<T>(inputs.opt(4))?;
        if iou.is_nan() || score_thr.is_some_and(|s| s.is_nan()) {
            return Err(OpError::unsupported(NAME, "NaN thresholds"));
        }
        let mut out = vec![];
        for b in 0..nb {
            let bb = bx
                .get(b * nbox * 4..(b + 1) * nbox * 4)
                .ok_or_else(|| OpError::invalid(NAME, "boxes are too short"))?;
            for c in 0..nc {
                let cs = sc
                    .get((b * nc + c) * nbox..(b * nc + c + 1) * nbox)
                    .ok_or_else(|| OpError::invalid(NAME, "scores are too short"))?;
                let mut cand: Vec<(T, usize)> = cs
                    .iter()
                    .enumerate()
                    .filter(|(_, &s)| score_thr.is_none_or(|t| s > t))
                    .map(|(i, &s)| (s, i))
                    .collect();
                if cand.iter().any(|(s, _)| s.is_nan()) {
                    return Err(OpError::unsupported(NAME, "NaN scores"));
                }
                // Highest score first; equal scores keep the lower box index first.
                cand.sort_by(|a, b| {
                    b.0.partial_cmp(&a.0)
                        .unwrap_or(std::cmp::Ordering::Equal)
                        .then(a.1.cmp(&b.1))
                });
                let mut kept: Vec<usize> = vec![];
                for &(_, i) in &cand {
                    if kept.len() as u64 >= max_out {
                        break;
                    }
                    let bi = &bb[i * 4..i * 4 + 4];
                    let ok = kept
                        .iter()
                        .all(|&k| !suppress(bi, &bb[k * 4..k * 4 + 4], self.center_point_box, iou));
                    if ok {
                        kept.push(i);
                        out.extend_from_slice(&[b as i64, c as i64, i as i64]);
                    }
                }
            }
        }
        Ok(out)
    }
}

impl Op for NonMaxSuppression {
    fn name(&self) -> &'static str {
        NAME
    }

    fn infer(&self, _ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        Ok(vec![ValueType::new(
            DType::I64,
            vec![Dim::Sym("NonMaxSuppression_selected".into()), Dim::Known(3)],
        )])
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, outputs, 16)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let boxes = inputs.req(0)?;
        let scores = inputs.req(1)?;
        if boxes.dtype() != scores.dtype() {
            return Err(OpError::invalid(NAME, "boxes and scores dtypes differ"));
        }
        let sel = match boxes.dtype() {
            DType::F32 => self.run::<f32>(inputs)?,
            DType::F64 => self.run::<f64>(inputs)?,
            d => return Err(OpError::unsupported(NAME, format!("dtype {d}"))),
        };
        let n = sel.len() / 3;
        Ok(vec![crate::util::output(NAME, vec![n, 3], sel)?])
    }

    fn describe(&self) -> String {
        format!("center_point_box={}", self.center_point_box as i32)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suppresses_overlapping_boxes() {
        let boxes = Tensor::from_vec(
            vec![1, 3, 4],
            vec![
                0.0f32, 0.0, 1.0, 1.0, 0.0, 0.1, 1.0, 1.1, 0.0, 10.0, 1.0, 11.0,
            ],
        )
        .unwrap();
        let scores = Tensor::from_vec(vec![1, 1, 3], vec![0.9f32, 0.75, 0.6]).unwrap();
        let max = Tensor::scalar(3i64);
        let iou = Tensor::scalar(0.5f32);
        let op = NonMaxSuppression {
            center_point_box: false,
        };
        let y = op
            .eval(&Inputs::new(
                NAME,
                &[Some(&boxes), Some(&scores), Some(&max), Some(&iou)],
            ))
            .unwrap();
        assert_eq!(y[0].shape(), &[2, 3]);
        assert_eq!(y[0].as_slice::<i64>().unwrap(), &[0, 0, 0, 0, 0, 2]);
        // Without max_output_boxes_per_class nothing is selected.
        let y = op
            .eval(&Inputs::new(NAME, &[Some(&boxes), Some(&scores)]))
            .unwrap();
        assert_eq!(y[0].shape(), &[0, 3]);
    }
}
