//! rnn ops: recurrent networks (RNN, GRU, LSTM) and, despite the name, Unique and the
//! text ops (TfIdfVectorizer, StringSplit, StringNormalizer, StringConcat).
use crate::registry::Registry;

pub mod common;
pub mod gru;
pub mod lstm;
pub mod rnn_op;
pub mod string_concat;
pub mod string_normalizer;
pub mod string_split;
pub mod tfidf_vectorizer;
pub mod unique;

pub fn register(r: &mut Registry) {
    r.add("LSTM", lstm::Lstm::from_onnx);
    r.add("GRU", gru::Gru::from_onnx);
    r.add("RNN", rnn_op::Rnn::from_onnx);
    r.add("Unique", unique::Unique::from_onnx);
    r.add(
        "TfIdfVectorizer",
        tfidf_vectorizer::TfIdfVectorizer::from_onnx,
    );
    r.add("StringSplit", string_split::StringSplit::from_onnx);
    r.add(
        "StringNormalizer",
        string_normalizer::StringNormalizer::from_onnx,
    );
    r.add("StringConcat", string_concat::StringConcat::from_onnx);
}
