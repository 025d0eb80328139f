//! BERT-base encoder, as HuggingFace `BertModel`'s `last_hidden_state` (no pooler).
//!
//! Linear layers are exported the way PyTorch's exporter does for 3-D inputs: `MatMul` with
//! the weight stored transposed (`[in, out]`) followed by `Add` of the bias. The weights
//! keep their HuggingFace names (`encoder.layer.0.attention.self.query.weight`, ...).

use millrace_onnx::proto::ModelProto;

use crate::builder::{attr_float, attr_int, attr_ints, Builder, Dim, FLOAT, INT64};

/// Seed of the random weights.
pub const SEED: u64 = 30522;

/// Vocabulary size.
pub const VOCAB: usize = 30522;
/// Hidden size.
pub const HIDDEN: usize = 768;
/// Encoder layers.
pub const LAYERS: usize = 12;
/// Attention heads.
pub const HEADS: usize = 12;
/// Feed-forward size.
pub const INTERMEDIATE: usize = 3072;
/// Maximum sequence length.
pub const MAX_POSITIONS: usize = 512;
/// Token type vocabulary.
pub const TYPE_VOCAB: usize = 2;
/// LayerNorm epsilon.
pub const LN_EPS: f32 = 1e-12;
/// Weight init std (`initializer_range`).
pub const INIT_STD: f32 = 0.02;

/// `MatMul` + `Add` linear in `scope`, weights `{module}.weight` ([in, out]) and `{module}.bias`.
fn linear(b: &mut Builder, module: &str, scope: &str, x: &str, fin: usize, fout: usize) -> String {
    let w = b.init_normal(&format!("{module}.weight"), &[fin, fout], INIT_STD);
    let bias = b.init_f32(&format!("{module}.bias"), &[fout], vec![0.0; fout]);
    let m = b.node("MatMul", scope, &[x, &w], vec![]);
    b.node("Add", scope, &[&bias, &m], vec![])
}

fn layer_norm(b: &mut Builder, module: &str, scope: &str, x: &str, out: Option<&str>) -> String {
    let g = b.init_f32(&format!("{module}.weight"), &[HIDDEN], vec![1.0; HIDDEN]);
    let be = b.init_f32(&format!("{module}.bias"), &[HIDDEN], vec![0.0; HIDDEN]);
    b.node_named_output(
        "LayerNormalization",
        scope,
        &[x, &g, &be],
        vec![attr_int("axis", -1), attr_float("epsilon", LN_EPS)],
        out,
    )
}

/// Builds the model.
pub fn build() -> ModelProto {
    let mut b = Builder::new("bert", SEED);
    let ids = b.input(
        "input_ids",
        INT64,
        &[Dim::Sym("batch"), Dim::Sym("sequence")],
    );
    let mask = b.input(
        "attention_mask",
        INT64,
        &[Dim::Sym("batch"), Dim::Sym("sequence")],
    );

    // Embeddings.
    let word = b.init_normal(
        "embeddings.word_embeddings.weight",
        &[VOCAB, HIDDEN],
        INIT_STD,
    );
    let pos = b.init_normal(
        "embeddings.position_embeddings.weight",
        &[MAX_POSITIONS, HIDDEN],
        INIT_STD,
    );
    let ttype = b.init_normal(
        "embeddings.token_type_embeddings.weight",
        &[TYPE_VOCAB, HIDDEN],
        INIT_STD,
    );
    let pos_ids = b.init_i64(
        "embeddings.position_ids",
        &[1, MAX_POSITIONS],
        (0..MAX_POSITIONS as i64).collect(),
    );

    let we = b.node(
        "Gather",
        "/embeddings/word_embeddings",
        &[&word, &ids],
        vec![attr_int("axis", 0)],
    );
    // token_type_ids are all zeros: every token adds row 0 of the token type table.
    let zero = b.const_i64(&[], &[0]);
    let te = b.node(
        "Gather",
        "/embeddings/token_type_embeddings",
        &[&ttype, &zero],
        vec![attr_int("axis", 0)],
    );
    let e = b.node("Add", "/embeddings", &[&we, &te], vec![]);
    // position_ids[:, 0:sequence]
    let shape = b.node("Shape", "/embeddings", &[&ids], vec![]);
    let one = b.const_i64(&[], &[1]);
    let seq = b.node(
        "Gather",
        "/embeddings",
        &[&shape, &one],
        vec![attr_int("axis", 0)],
    );
    let axes0 = b.const_i64(&[1], &[0]);
    let seq1 = b.node("Unsqueeze", "/embeddings", &[&seq, &axes0], vec![]);
    let starts = b.const_i64(&[1], &[0]);
    let axes1 = b.const_i64(&[1], &[1]);
    let pids = b.node(
        "Slice",
        "/embeddings",
        &[&pos_ids, &starts, &seq1, &axes1],
        vec![],
    );
    let pe = b.node(
        "Gather",
        "/embeddings/position_embeddings",
        &[&pos, &pids],
        vec![attr_int("axis", 0)],
    );
    let e = b.node("Add", "/embeddings", &[&e, &pe], vec![]);
    let mut h = layer_norm(
        &mut b,
        "embeddings.LayerNorm",
        "/embeddings/LayerNorm",
        &e,
        None,
    );

    // Extended attention mask: (1 - mask[:, None, None, :]) * finfo(f32).min.
    let axes12 = b.const_i64(&[2], &[1, 2]);
    let m = b.node("Unsqueeze", "", &[&mask, &axes12], vec![]);
    let m = b.node("Cast", "", &[&m], vec![attr_int("to", FLOAT as i64)]);
    let onef = b.scalar_f32(1.0);
    let m = b.node("Sub", "", &[&onef, &m], vec![]);
    let fmin = b.scalar_f32(f32::MIN);
    let ext = b.node("Mul", "", &[&m, &fmin], vec![]);

    let head = HIDDEN / HEADS;
    let split_shape = b.const_i64(&[4], &[0, 0, HEADS as i64, head as i64]);
    let merge_shape = b.const_i64(&[3], &[0, 0, HIDDEN as i64]);
    let scale = b.scalar_f32((head as f32).sqrt());
    let sqrt2 = b.scalar_f32(std::f32::consts::SQRT_2);
    let half = b.scalar_f32(0.5);

    for l in 0..LAYERS {
        let mp = format!("encoder.layer.{l}");
        let sp = format!("/encoder/layer.{l}");
        let ss = format!("{sp}/attention/self");
        let heads = |b: &mut Builder, name: &str, x: &str, perm: &[i64]| {
            let t = linear(
                b,
                &format!("{mp}.attention.self.{name}"),
                &format!("{ss}/{name}"),
                x,
                HIDDEN,
                HIDDEN,
            );
            let r = b.node("Reshape", &ss, &[&t, &split_shape], vec![]);
            b.node("Transpose", &ss, &[&r], vec![attr_ints("perm", perm)])
        };
        let q = heads(&mut b, "query", &h, &[0, 2, 1, 3]);
        let k = heads(&mut b, "key", &h, &[0, 2, 3, 1]); // K^T directly
        let v = heads(&mut b, "value", &h, &[0, 2, 1, 3]);
        let s = b.node("MatMul", &ss, &[&q, &k], vec![]);
        let s = b.node("Div", &ss, &[&s, &scale], vec![]);
        let s = b.node("Add", &ss, &[&s, &ext], vec![]);
        let p = b.node("Softmax", &ss, &[&s], vec![attr_int("axis", -1)]);
        let c = b.node("MatMul", &ss, &[&p, &v], vec![]);
        let c = b.node(
            "Transpose",
            &ss,
            &[&c],
            vec![attr_ints("perm", &[0, 2, 1, 3])],
        );
        let c = b.node("Reshape", &ss, &[&c, &merge_shape], vec![]);
        let so = format!("{sp}/attention/output");
        let d = linear(
            &mut b,
            &format!("{mp}.attention.output.dense"),
            &format!("{so}/dense"),
            &c,
            HIDDEN,
            HIDDEN,
        );
        let r = b.node("Add", &so, &[&d, &h], vec![]);
        let a = layer_norm(
            &mut b,
            &format!("{mp}.attention.output.LayerNorm"),
            &format!("{so}/LayerNorm"),
            &r,
            None,
        );

        let si = format!("{sp}/intermediate");
        let i = linear(
            &mut b,
            &format!("{mp}.intermediate.dense"),
            &format!("{si}/dense"),
            &a,
            HIDDEN,
            INTERMEDIATE,
        );
        // Exact GELU as the exporter writes it: x * (erf(x / sqrt2) + 1) * 0.5.
        let ga = format!("{si}/intermediate_act_fn");
        let g = b.node("Div", &ga, &[&i, &sqrt2], vec![]);
        let g = b.node("Erf", &ga, &[&g], vec![]);
        let g = b.node("Add", &ga, &[&g, &onef], vec![]);
        let g = b.node("Mul", &ga, &[&i, &g], vec![]);
        let g = b.node("Mul", &ga, &[&g, &half], vec![]);

        let sout = format!("{sp}/output");
        let d = linear(
            &mut b,
            &format!("{mp}.output.dense"),
            &format!("{sout}/dense"),
            &g,
            INTERMEDIATE,
            HIDDEN,
        );
        let r = b.node("Add", &sout, &[&d, &a], vec![]);
        let out = (l == LAYERS - 1).then_some("last_hidden_state");
        h = layer_norm(
            &mut b,
            &format!("{mp}.output.LayerNorm"),
            &format!("{sout}/LayerNorm"),
            &r,
            out,
        );
    }
    b.output(
        "last_hidden_state",
        FLOAT,
        &[
            Dim::Sym("batch"),
            Dim::Sym("sequence"),
            Dim::Fixed(HIDDEN as i64),
        ],
    );
    b.finish("BERT-base encoder (HuggingFace BertModel last_hidden_state, no pooler) with seeded random weights")
}
