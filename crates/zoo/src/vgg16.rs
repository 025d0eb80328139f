//! torchvision `vgg16` (no batch norm).

use millrace_onnx::proto::ModelProto;

use crate::builder::{torch_scope, Builder};

/// Seed of the random weights.
pub const SEED: u64 = 16;

/// Builds the model.
pub fn build() -> ModelProto {
    let mut b = Builder::new("vgg16", SEED);
    let x = b.vision_input();
    const CFG: [usize; 18] = [
        64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0,
    ];
    let mut o = x;
    let mut cin = 3;
    let mut idx = 0;
    for v in CFG {
        if v == 0 {
            o = b.max_pool(&torch_scope(&format!("features.{idx}")), &o, 2, 2, 0, false);
            idx += 1;
        } else {
            o = b.conv(&format!("features.{idx}"), &o, cin, v, 3, 1, 1, 1, true);
            o = b.relu(&torch_scope(&format!("features.{}", idx + 1)), &o);
            cin = v;
            idx += 2;
        }
    }
    // AdaptiveAvgPool2d((7, 7)) on the 7x7 map of a 224x224 input is the identity: omitted.
    let f = b.node(
        "Flatten",
        "",
        &[&o],
        vec![crate::builder::attr_int("axis", 1)],
    );
    let h = b.linear_gemm("classifier.0", &f, 512 * 7 * 7, 4096, None);
    let h = b.relu("/classifier/classifier.1", &h);
    let h = b.linear_gemm("classifier.3", &h, 4096, 4096, None);
    let h = b.relu("/classifier/classifier.4", &h);
    b.linear_gemm("classifier.6", &h, 4096, 1000, Some("output"));
    b.vision_output(1000);
    b.finish("torchvision vgg16 architecture with seeded random weights")
}
