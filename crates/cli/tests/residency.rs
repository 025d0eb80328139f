//! `millrace plan --sram`: the weight residency facts of issue 5, on the built binary.
//!
//! ResNet-50's weights fit a 40 MB SRAM only at int8 (fp16 ~51 MB and fp32 ~102 MB do
//! not); VGG-16's convolution weights all stay resident in 48 MB at int8 while its first
//! FC layer (~103 MB) is streamed. Roofline ceilings are given so nothing is measured.
mod common;

use common::{millrace, models, text};

fn plan(model: &str, sram: &str, dtype: &str) -> String {
    let o = millrace(&[
        "plan",
        model,
        "--sram",
        sram,
        "--weight-dtype",
        dtype,
        "--peak-gflops",
        "1000",
        "--bandwidth-gbs",
        "50",
    ]);
    let text = text(&o);
    assert!(o.status.success(), "{text}");
    text
}

/// The `(resident, total)` tensor counts of the `resident:` line.
fn resident_counts(text: &str) -> (usize, usize) {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("resident:"))
        .unwrap_or_else(|| panic!("no resident line:\n{text}"));
    let frac = line
        .split_whitespace()
        .find(|w| w.contains('/'))
        .expect("resident/total");
    let (r, t) = frac.split_once('/').unwrap();
    (r.parse().unwrap(), t.parse().unwrap())
}

/// The columns of the `by layer kind` row for `kind`.
fn kind_row(text: &str, kind: &str) -> Vec<String> {
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind} row:\n{text}"));
    line.split_whitespace().map(str::to_string).collect()
}

#[test]
fn resnet50_fits_40mb_only_at_int8() {
    let onnx = models().join("resnet50.onnx");
    for model in ["resnet50", onnx.to_str().unwrap()] {
        let int8 = plan(model, "40MB", "int8");
        assert!(int8.contains("fits: yes (needs 25."), "{int8}");
        let (r, t) = resident_counts(&int8);
        assert_eq!(r, t, "{int8}");
        assert!(int8.contains("with residency          0 B"), "{int8}");

        let fp16 = plan(model, "40MB", "fp16");
        assert!(fp16.contains("fits: no (needs 51."), "{fp16}");
        let (r, t) = resident_counts(&fp16);
        assert!(r < t, "{fp16}");

        let fp32 = plan(model, "40MB", "fp32");
        assert!(fp32.contains("fits: no (needs 102."), "{fp32}");
        // A batch-1 FC layer streaming its weights is memory-bound; resident, it is not.
        assert!(
            int8.lines().any(|l| l.contains("/fc/Gemm")
                && l.contains("memory-bound")
                && !l.trim_end().ends_with("memory-bound")),
            "{int8}"
        );
    }
}

#[test]
fn vgg16_conv_weights_resident_first_fc_streamed() {
    let text = plan("vgg16", "48MB", "int8");
    assert!(text.contains("fits: no (needs 138."), "{text}");
    // conv: 26/26 tensors, 13/13 layers resident.
    let conv = kind_row(&text, "conv");
    assert_eq!(conv[1], "26/26", "{text}");
    assert!(conv.contains(&"13/13".to_string()), "{text}");
    // fc: the first layer does not fit; the other two do.
    let fc = kind_row(&text, "fc");
    assert!(fc.contains(&"2/3".to_string()), "{text}");
    assert!(
        text.contains("fc layers not fully resident: /classifier/classifier.0/Gemm"),
        "{text}"
    );
    assert!(
        text.contains("102.8 MB (> capacity) /classifier/classifier.0/Gemm"),
        "{text}"
    );
}

#[test]
fn bad_residency_arguments_are_errors() {
    for (flag, value, want) in [
        ("--sram", "40XB", "unknown unit"),
        ("--weight-dtype", "bf16", "expected fp32, fp16 or int8"),
        ("--peak-gflops", "0", "positive number"),
    ] {
        let mut args = vec!["plan", "resnet50", "--bandwidth-gbs", "10"];
        if flag != "--sram" {
            args.extend(["--sram", "40MB"]);
        }
        args.extend([flag, value]);
        if flag != "--peak-gflops" {
            args.extend(["--peak-gflops", "100"]);
        }
        let o = millrace(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(want), "{args:?}: {err}");
    }
}
