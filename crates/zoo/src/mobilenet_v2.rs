//! torchvision `mobilenet_v2` (width 1.0).

use millrace_onnx::proto::ModelProto;

use crate::builder::{torch_scope, Builder};

/// Seed of the random weights.
pub const SEED: u64 = 2;

/// `Conv2dNormActivation`: conv (no bias) `{m}.0`, BN `{m}.1`, ReLU6 `{m}.2` as `Clip(0, 6)`.
#[allow(clippy::too_many_arguments)]
fn conv_bn_relu6(
    b: &mut Builder,
    m: &str,
    x: &str,
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    groups: usize,
) -> String {
    let c = b.conv(
        &format!("{m}.0"),
        x,
        cin,
        cout,
        k,
        stride,
        (k - 1) / 2,
        groups,
        false,
    );
    let n = b.batch_norm(&format!("{m}.1"), &c, cout, 1e-5, 1.0);
    let lo = b.scalar_f32(0.0);
    let hi = b.scalar_f32(6.0);
    b.node(
        "Clip",
        &torch_scope(&format!("{m}.2")),
        &[&n, &lo, &hi],
        vec![],
    )
}

fn inverted_residual(
    b: &mut Builder,
    m: &str,
    x: &str,
    cin: usize,
    cout: usize,
    stride: usize,
    t: usize,
) -> String {
    let hidden = cin * t;
    let mut i = 0;
    let mut o = x.to_string();
    if t != 1 {
        o = conv_bn_relu6(b, &format!("{m}.conv.{i}"), &o, cin, hidden, 1, 1, 1);
        i += 1;
    }
    o = conv_bn_relu6(
        b,
        &format!("{m}.conv.{i}"),
        &o,
        hidden,
        hidden,
        3,
        stride,
        hidden,
    );
    let c = b.conv(
        &format!("{m}.conv.{}", i + 1),
        &o,
        hidden,
        cout,
        1,
        1,
        0,
        1,
        false,
    );
    o = b.batch_norm(&format!("{m}.conv.{}", i + 2), &c, cout, 1e-5, 1.0);
    if stride == 1 && cin == cout {
        o = b.node("Add", &torch_scope(m), &[x, &o], vec![]);
    }
    o
}

/// Builds the model.
pub fn build() -> ModelProto {
    let mut b = Builder::new("mobilenet_v2", SEED);
    let x = b.vision_input();
    let mut o = conv_bn_relu6(&mut b, "features.0", &x, 3, 32, 3, 2, 1);
    let mut cin = 32;
    let mut idx = 1;
    let settings = [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ];
    for (t, c, n, s) in settings {
        for i in 0..n {
            o = inverted_residual(
                &mut b,
                &format!("features.{idx}"),
                &o,
                cin,
                c,
                if i == 0 { s } else { 1 },
                t,
            );
            cin = c;
            idx += 1;
        }
    }
    o = conv_bn_relu6(&mut b, &format!("features.{idx}"), &o, cin, 1280, 1, 1, 1);
    // classifier.0 is Dropout(0.2): nothing in an eval export.
    b.classifier_head(&o, "classifier.1", 1280, 1000);
    b.vision_output(1000);
    b.finish("torchvision mobilenet_v2 architecture with seeded random weights")
}
