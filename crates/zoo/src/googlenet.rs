//! torchvision `googlenet` (aux_logits=False, transform_input=False).

use millrace_onnx::proto::ModelProto;

use crate::builder::{torch_scope, Builder};

/// Seed of the random weights.
pub const SEED: u64 = 22;

/// `BasicConv2d`: `{m}.conv` (no bias), `{m}.bn` (eps 0.001), `Relu` in scope `{m}`.
#[allow(clippy::too_many_arguments)]
fn basic_conv(
    b: &mut Builder,
    m: &str,
    x: &str,
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    pad: usize,
) -> String {
    let c = b.conv(&format!("{m}.conv"), x, cin, cout, k, stride, pad, 1, false);
    let n = b.batch_norm(&format!("{m}.bn"), &c, cout, 1e-3, 1.0);
    b.relu(&torch_scope(m), &n)
}

/// `Inception(in, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj)`; returns (output, channels).
fn inception(b: &mut Builder, m: &str, x: &str, cin: usize, ch: [usize; 6]) -> (String, usize) {
    let [c1, c3r, c3, c5r, c5, pp] = ch;
    let b1 = basic_conv(b, &format!("{m}.branch1"), x, cin, c1, 1, 1, 0);
    let t = basic_conv(b, &format!("{m}.branch2.0"), x, cin, c3r, 1, 1, 0);
    let b2 = basic_conv(b, &format!("{m}.branch2.1"), &t, c3r, c3, 3, 1, 1);
    let t = basic_conv(b, &format!("{m}.branch3.0"), x, cin, c5r, 1, 1, 0);
    // torchvision's known quirk: the "5x5" branch uses a 3x3 conv.
    let b3 = basic_conv(b, &format!("{m}.branch3.1"), &t, c5r, c5, 3, 1, 1);
    let p = b.max_pool(&torch_scope(&format!("{m}.branch4.0")), x, 3, 1, 1, true);
    let b4 = basic_conv(b, &format!("{m}.branch4.1"), &p, cin, pp, 1, 1, 0);
    let o = b.node(
        "Concat",
        &torch_scope(m),
        &[&b1, &b2, &b3, &b4],
        vec![crate::builder::attr_int("axis", 1)],
    );
    (o, c1 + c3 + c5 + pp)
}

/// Builds the model.
pub fn build() -> ModelProto {
    let mut b = Builder::new("googlenet", SEED);
    let x = b.vision_input();
    let o = basic_conv(&mut b, "conv1", &x, 3, 64, 7, 2, 3);
    let o = b.max_pool("/maxpool1", &o, 3, 2, 0, true);
    let o = basic_conv(&mut b, "conv2", &o, 64, 64, 1, 1, 0);
    let o = basic_conv(&mut b, "conv3", &o, 64, 192, 3, 1, 1);
    let mut o = b.max_pool("/maxpool2", &o, 3, 2, 0, true);
    let mut c = 192;
    let blocks: [(&str, [usize; 6]); 9] = [
        ("inception3a", [64, 96, 128, 16, 32, 32]),
        ("inception3b", [128, 128, 192, 32, 96, 64]),
        ("inception4a", [192, 96, 208, 16, 48, 64]),
        ("inception4b", [160, 112, 224, 24, 64, 64]),
        ("inception4c", [128, 128, 256, 24, 64, 64]),
        ("inception4d", [112, 144, 288, 32, 64, 64]),
        ("inception4e", [256, 160, 320, 32, 128, 128]),
        ("inception5a", [256, 160, 320, 32, 128, 128]),
        ("inception5b", [384, 192, 384, 48, 128, 128]),
    ];
    for (name, ch) in blocks {
        (o, c) = inception(&mut b, name, &o, c, ch);
        match name {
            "inception3b" => o = b.max_pool("/maxpool3", &o, 3, 2, 0, true),
            "inception4e" => o = b.max_pool("/maxpool4", &o, 2, 2, 0, true),
            _ => {}
        }
    }
    // Dropout(0.2) before fc: nothing in an eval export.
    b.classifier_head(&o, "fc", c, 1000);
    b.vision_output(1000);
    b.finish("torchvision googlenet architecture (aux_logits=False, transform_input=False) with seeded random weights")
}
