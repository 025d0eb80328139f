//! DepthToSpace (ONNX opsets 1, 11, 13) and SpaceToDepth (opsets 1, 13): move blocks of
//! `blocksize x blocksize` between the channel and spatial axes of an NCHW tensor.
use super::common::with_shape;
use super::transpose::transpose;
use millrace_core::{Dim, Tensor};
use millrace_ir::{Attributes, Cost, InferCtx, Inputs, Op, OpError, ValueType};
use std::any::Any;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct DepthToSpace {
    pub blocksize: usize,
    /// `CRD` (column-row-depth) rather than the default `DCR`.
    pub crd: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SpaceToDepth {
    pub blocksize: usize,
}

fn blocksize(op: &str, attrs: &Attributes) -> Result<usize, OpError> {
    let b = attrs.req_int("blocksize")?;
    if b < 1 {
        return Err(OpError::attribute(op, "blocksize", "must be >= 1"));
    }
    Ok(b as usize)
}

impl DepthToSpace {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        let crd = match attrs.string_or("mode", "DCR")?.as_str() {
            "DCR" => false,
            "CRD" => true,
            m => {
                return Err(OpError::attribute(
                    "DepthToSpace",
                    "mode",
                    format!("unknown mode {m}"),
                ))
            }
        };
        Ok(Arc::new(DepthToSpace {
            blocksize: blocksize("DepthToSpace", attrs)?,
            crd,
        }))
    }
}

impl SpaceToDepth {
    pub fn from_onnx(attrs: &Attributes, _opset: i64) -> Result<Arc<dyn Op>, OpError> {
        Ok(Arc::new(SpaceToDepth {
            blocksize: blocksize("SpaceToDepth", attrs)?,
        }))
    }
}

fn nchw(op: &str, t: &Tensor) -> Result<[usize; 4], OpError> {
    match *t.shape() {
        [n, c, h, w] => Ok([n, c, h, w]),
        _ => Err(OpError::invalid(op, "input must be 4-D (NCHW)")),
    }
}

fn scale(d: &Dim, b: usize, up: bool) -> Dim {
    match d {
        Dim::Known(n) if up => Dim::Known(n * b),
        Dim::Known(n) => Dim::Known(n / b),
        Dim::Sym(s) if up => Dim::Sym(format!("{s}*{b}")),
        Dim::Sym(s) => Dim::Sym(format!("{s}/{b}")),
    }
}

fn infer4(
    op: &str,
    ctx: &InferCtx<'_>,
    b: usize,
    to_space: bool,
) -> Result<Vec<ValueType>, OpError> {
    let x = ctx.input(0)?;
    let shape = match &x.shape {
        Some(s) if s.len() == 4 => {
            let bb = b * b;
            if to_space {
                if let Dim::Known(c) = s[1] {
                    if c % bb != 0 {
                        return Err(OpError::invalid(
                            op,
                            "channels not divisible by blocksize^2",
                        ));
                    }
                }
            } else {
                for d in &s[2..] {
                    if let Dim::Known(n) = d {
                        if n % b != 0 {
                            return Err(OpError::invalid(
                                op,
                                "spatial dims not divisible by blocksize",
                            ));
                        }
                    }
                }
            }
            Some(vec![
                s[0].clone(),
                scale(&s[1], bb, !to_space),
                scale(&s[2], b, to_space),
                scale(&s[3], b, to_space),
            ])
        }
        Some(_) => return Err(OpError::invalid(op, "input must be 4-D (NCHW)")),
        None => None,
    };
    Ok(vec![ValueType {
        dtype: x.dtype,
        shape,
    }])
}

impl Op for DepthToSpace {
    fn name(&self) -> &'static str {
        "DepthToSpace"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        infer4(self.name(), ctx, self.blocksize, true)
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::movement(inputs, outputs)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let op = self.name();
        let x = inputs.req(0)?;
        let [n, c, h, w] = nchw(op, x)?;
        let b = self.blocksize;
        if c % (b * b) != 0 {
            return Err(OpError::invalid(
                op,
                "channels not divisible by blocksize^2",
            ));
        }
        let c2 = c / (b * b);
        let (view, perm) = if self.crd {
            (vec![n, c2, b, b, h, w], [0, 1, 4, 2, 5, 3])
        } else {
            (vec![n, b, b, c2, h, w], [0, 3, 4, 1, 5, 2])
        };
        let t = transpose(op, &with_shape(op, x, view)?, &perm)?;
        Ok(vec![with_shape(op, &t, vec![n, c2, h * b, w * b])?])
    }

    fn describe(&self) -> String {
        format!(
            "blocksize={} mode={}",
            self.blocksize,
            if self.crd { "CRD" } else { "DCR" }
        )
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Op for SpaceToDepth {
    fn name(&self) -> &'static str {
        "SpaceToDepth"
    }

    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError> {
        infer4(self.name(), ctx, self.blocksize, false)
    }

    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::movement(inputs, outputs)
    }

    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError> {
        let op = self.name();
        let x = inputs.req(0)?;
        let [n, c, h, w] = nchw(op, x)?;
        let b = self.blocksize;
        if h % b != 0 || w % b != 0 {
            return Err(OpError::invalid(
                op,
                "spatial dims not divisible by blocksize",
            ));
        }
        let view = vec![n, c, h / b, b, w / b, b];
        let t = transpose(op, &with_shape(op, x, view)?, &[0, 3, 5, 1, 2, 4])?;
        Ok(vec![with_shape(op, &t, vec![n, c * b * b, h / b, w / b])?])
    }

    fn describe(&self) -> String {
        format!("blocksize={}", self.blocksize)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_modes() {
        let x = Tensor::from_vec(vec![1, 4, 1, 1], vec![0i32, 1, 2, 3]).unwrap();
        let dcr = DepthToSpace {
            blocksize: 2,
            crd: false,
        }
        .eval(&Inputs::new("DepthToSpace", &[Some(&x)]))
        .unwrap();
        assert_eq!(dcr[0].shape(), &[1, 1, 2, 2]);
        assert_eq!(dcr[0].as_slice::<i32>().unwrap(), &[0, 1, 2, 3]);
        let x8 = Tensor::from_vec(vec![1, 8, 1, 1], (0..8).collect::<Vec<i32>>()).unwrap();
        let dcr = DepthToSpace {
            blocksize: 2,
            crd: false,
        }
        .eval(&Inputs::new("DepthToSpace", &[Some(&x8)]))
        .unwrap();
        assert_eq!(dcr[0].as_slice::<i32>().unwrap(), &[0, 2, 4, 6, 1, 3, 5, 7]);
        let crd = DepthToSpace {
            blocksize: 2,
            crd: true,
        }
        .eval(&Inputs::new("DepthToSpace", &[Some(&x8)]))
        .unwrap();
        assert_eq!(crd[0].as_slice::<i32>().unwrap(), &[0, 1, 2, 3, 4, 5, 6, 7]);
        let back = SpaceToDepth { blocksize: 2 }
            .eval(&Inputs::new("SpaceToDepth", &[Some(&dcr[0])]))
            .unwrap();
        assert_eq!(back[0], x8);
        let bad = Tensor::from_vec(vec![1, 3, 1, 1], vec![0i32; 3]).unwrap();
        assert!(DepthToSpace {
            blocksize: 2,
            crd: false
        }
        .eval(&Inputs::new("DepthToSpace", &[Some(&bad)]))
        .is_err());
    }
}
