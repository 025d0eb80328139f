//! torchvision `resnet50` (v1.5: the stride sits on the bottleneck's 3x3 conv).

use millrace_onnx::proto::ModelProto;

use crate::builder::{torch_scope, Builder};

/// Seed of the random weights.
pub const SEED: u64 = 50;

/// Bottleneck `bn3` gamma: keeps the residual stream's growth bounded with random weights.
const BN3_GAMMA: f32 = 0.2;

/// `conv` (no bias) + `bn` (+ `Relu` when `relu_scope` is given).
#[allow(clippy::too_many_arguments)]
fn conv_bn(
    b: &mut Builder,
    conv: &str,
    bn: &str,
    x: &str,
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    gamma: f32,
) -> String {
    let c = b.conv(conv, x, cin, cout, k, stride, k / 2, 1, false);
    b.batch_norm(bn, &c, cout, 1e-5, gamma)
}

fn bottleneck(
    b: &mut Builder,
    m: &str,
    x: &str,
    cin: usize,
    width: usize,
    stride: usize,
) -> String {
    let cout = width * 4;
    let scope = torch_scope(m);
    let o = conv_bn(
        b,
        &format!("{m}.conv1"),
        &format!("{m}.bn1"),
        x,
        cin,
        width,
        1,
        1,
        1.0,
    );
    let o = b.relu(&format!("{scope}/relu"), &o);
    let o = conv_bn(
        b,
        &format!("{m}.conv2"),
        &format!("{m}.bn2"),
        &o,
        width,
        width,
        3,
        stride,
        1.0,
    );
    let o = b.relu(&format!("{scope}/relu_1"), &o);
    let o = conv_bn(
        b,
        &format!("{m}.conv3"),
        &format!("{m}.bn3"),
        &o,
        width,
        cout,
        1,
        1,
        BN3_GAMMA,
    );
    let identity = if stride != 1 || cin != cout {
        conv_bn(
            b,
            &format!("{m}.downsample.0"),
            &format!("{m}.downsample.1"),
            x,
            cin,
            cout,
            1,
            stride,
            1.0,
        )
    } else {
        x.to_string()
    };
    let s = b.node("Add", &scope, &[&o, &identity], vec![]);
    b.relu(&format!("{scope}/relu_2"), &s)
}

/// Builds the model.
pub fn build() -> ModelProto {
    let mut b = Builder::new("resnet50", SEED);
    let x = b.vision_input();
    let o = conv_bn(&mut b, "conv1", "bn1", &x, 3, 64, 7, 2, 1.0);
    let o = b.relu("/relu", &o);
    let mut o = b.max_pool("/maxpool", &o, 3, 2, 1, false);
    let mut cin = 64;
    for (li, (blocks, width, stride)) in [(3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2)]
        .into_iter()
        .enumerate()
    {
        for bi in 0..blocks {
            let m = format!("layer{}.{bi}", li + 1);
            o = bottleneck(&mut b, &m, &o, cin, width, if bi == 0 { stride } else { 1 });
            cin = width * 4;
        }
    }
    b.classifier_head(&o, "fc", 2048, 1000);
    b.vision_output(1000);
    b.finish("torchvision resnet50 architecture with seeded random weights")
}
