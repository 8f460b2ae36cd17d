//! The diagnostics documentation cannot drift from the compiler:
//!
//! - `every_diagnostic_is_documented`: the catalogue of diagnostics is the set of message templates
//!   in `model-compiler/src` (every `Diagnostic::new`, `syn::Error::new` and parser `.error(...)`
//!   outside `#[cfg(test)]`, read from the source text); each template must have an entry in
//!   `docs/diagnostics.md`, found by the template's longest literal fragment.
//! - `suggested_fixes_work`: for each help that suggests code, the original source gives that help,
//!   and the source with the suggestion applied compiles without any diagnostic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::str::FromStr;

use proc_macro2::TokenStream;

/// One message template and where it is built.
#[derive(Debug)]
struct Template {
    site: String,
    text: String,
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
    out
}

/// The string literal starting at `s[0] == '"'`: its value (escapes and line continuations resolved)
/// and the byte length of the literal in the source.
fn string_literal(s: &str) -> (String, usize) {
    let b = s.as_bytes();
    let (mut i, mut out) = (1, String::new());
    while i < b.len() {
        match b[i] {
            b'"' => return (out, i + 1),
            b'\\' => {
                match b.get(i + 1) {
                    Some(b'\n') => {
                        // Line continuation: skip the newline and the next line's leading whitespace.
                        i += 2;
                        while i < b.len() && b[i].is_ascii_whitespace() {
                            i += 1;
                        }
                        continue;
                    }
                    Some(b'n') => out.push('\n'),
                    Some(&c) => out.push(c as char),
                    None => {}
                }
                i += 2;
            }
            _ => {
                let c = s[i..].chars().next().unwrap();
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    (out, b.len())
}

/// The text of the call's arguments: from just after the `(` at `s[0]` to its matching `)`.
fn call_args(s: &str) -> &str {
    let b = s.as_bytes();
    let (mut depth, mut i) = (0usize, 0);
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += string_literal(&s[i..]).1;
                continue;
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                depth -= 1;
                if depth == 0 {
                    return &s[1..i];
                }
            }
            _ => {}
        }
        i += 1;
    }
    &s[1..]
}

/// Splits call arguments at top-level commas.
fn split_args(s: &str) -> Vec<&str> {
    let b = s.as_bytes();
    let (mut depth, mut start, mut i, mut out) = (0usize, 0, 0, Vec::new());
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += string_literal(&s[i..]).1;
                continue;
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b',' if depth == 0 => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(s[start..].trim());
    out
}

/// Every string literal in `s`, in order.
fn literals(s: &str) -> Vec<String> {
    let (mut out, mut i) = (Vec::new(), 0);
    while let Some(j) = s[i..].find('"') {
        let (lit, len) = string_literal(&s[i + j..]);
        out.push(lit);
        i += j + len;
    }
    out
}

/// The templates a message argument stands for: its literal (`"..."`, `format!("...", ...)`), a
/// `const` of the file, or the literals of the nearest `let <name> = ...;` before the call.
fn templates_of(arg: &str, before: &str, file: &str) -> Vec<String> {
    let arg = arg.trim();
    if arg.starts_with('"') || arg.starts_with("format!(") {
        return literals(arg).into_iter().take(1).collect();
    }
    let ident: String = arg.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    if ident.is_empty() || ident.len() != arg.len() {
        return Vec::new();
    }
    if let Some(p) = file.find(&format!("const {ident}: &str =")) {
        return literals(&file[p..p + file[p..].find(';').unwrap()]);
    }
    if let Some(p) = before.rfind(&format!("let {ident} = ")) {
        let stmt = &before[p..];
        let end = stmt.find(";\n").unwrap_or(stmt.len());
        if stmt[..end].contains("Diagnostic::new(") || stmt[..end].contains(".help(") {
            return Vec::new(); // a Diagnostic passed along: read where it is built
        }
        return literals(&stmt[..end]).into_iter().filter(|l| !l.is_empty()).collect();
    }
    Vec::new()
}

/// The diagnostic catalogue: every message template built in `model-compiler/src` outside tests.
fn catalogue() -> (Vec<Template>, Vec<String>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let (mut found, mut unread) = (Vec::new(), Vec::new());
    for path in rust_files(&src) {
        let name = path.strip_prefix(&src).unwrap().display().to_string();
        if name == "diag.rs" {
            continue; // the sink: converts other errors, builds none of its own
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let code = text.find("#[cfg(test)]").map_or(text.as_str(), |p| &text[..p]);
        for (pattern, message_arg) in [("Diagnostic::new(", 1), ("syn::Error::new(", 1), (".error(", 0)] {
            let mut from = 0;
            while let Some(p) = code[from..].find(pattern) {
                let at = from + p;
                from = at + pattern.len();
                let args = split_args(call_args(&code[at + pattern.len() - 1..]));
                let Some(arg) = args.get(message_arg) else { continue };
                if pattern == ".error(" && arg.starts_with("Diagnostic") {
                    continue; // `r.error(Diagnostic::new(..))`: the inner call is read on its own
                }
                let line = code[..at].lines().count();
                let site = format!("model-compiler/src/{name}:{line}");
                let texts = templates_of(arg, &code[..at], code);
                let bare = arg.chars().all(|c| c.is_alphanumeric() || c == '_');
                if texts.is_empty() && !(pattern == ".error(" && bare) {
                    // (`r.error(d)` with `d` a Diagnostic: read where it is built.)
                    unread.push(format!("{site}: `{arg}`"));
                }
                found.extend(texts.into_iter().map(|text| Template { site: site.clone(), text }));
            }
        }
    }
    (found, unread)
}

/// The template's longest literal fragment between `{...}` placeholders, without backticks.
fn key(template: &str) -> String {
    let mut fragments = vec![String::new()];
    let mut depth = 0;
    for c in template.chars() {
        match c {
            '{' => {
                depth += 1;
                fragments.push(String::new());
            }
            '}' => depth -= 1,
            '`' => {}
            c if depth == 0 => fragments.last_mut().unwrap().push(c),
            _ => {}
        }
    }
    fragments.into_iter().map(|f| f.trim().to_string()).max_by_key(|f| f.len()).unwrap_or_default()
}

/// `docs/diagnostics.md` as plain text: no backticks, no backslash escapes, spaces collapsed.
fn doc_text() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/diagnostics.md");
    let raw = std::fs::read_to_string(path).unwrap().replace("\\`", "").replace('`', "").replace("\\|", "|");
    raw.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn every_diagnostic_is_documented() {
    let (templates, unread) = catalogue();
    assert!(
        unread.is_empty(),
        "these diagnostics build their message in a way this test cannot read; use a string literal, \
         `format!(\"...\")`, a `const` or a `let` of them:\n{}",
        unread.join("\n")
    );
    assert!(templates.len() > 100, "the catalogue looks too small ({}): is the extraction broken?", templates.len());
    let doc = doc_text();
    let missing: Vec<String> = templates
        .iter()
        .filter(|t| !doc.contains(&key(&t.text).split_whitespace().collect::<Vec<_>>().join(" ")))
        .map(|t| format!("{}: {:?} (looked for {:?})", t.site, t.text, key(&t.text)))
        .collect();
    assert!(missing.is_empty(), "docs/diagnostics.md has no entry for:\n{}", missing.join("\n"));
}

/// Every diagnostic of `src` as `(message, help)`.
fn diagnostics(src: &str) -> Vec<(String, String)> {
    let (_, diags) = model_compiler::compile(TokenStream::from_str(src).expect("test source must lex"));
    diags.items().iter().map(|d| (d.message.clone(), d.help.clone().unwrap_or_default())).collect()
}

/// `body` inside a model gives exactly one diagnostic, whose message contains `message` and whose help
/// contains every snippet of `suggested`; replacing `from` by `to` (which holds those snippets: the
/// suggestion applied) gives a model that compiles without any diagnostic.
fn check_fix(body: &str, message: &str, suggested: &[&str], from: &str, to: &str) {
    let src = format!("struct M {{ {body} }}");
    let diags = diagnostics(&src);
    assert_eq!(diags.len(), 1, "{src}: {diags:#?}");
    let (msg, help) = &diags[0];
    assert!(msg.contains(message), "{src}: message {msg:?} lacks {message:?}");
    for s in suggested {
        assert!(help.contains(s), "{src}: help {help:?} does not suggest {s:?}");
        assert!(to.contains(s), "the fix {to:?} must apply the suggestion {s:?}");
    }
    assert!(src.contains(from), "{from:?} is not in {src}");
    let fixed = src.replacen(from, to, 1);
    let after = diagnostics(&fixed);
    assert!(after.is_empty(), "the suggested fix does not compile:\n{fixed}\n{after:#?}");
}

#[test]
fn suggested_fixes_work() {
    // Merges of different sizes: project to the other size, or concatenate.
    let merge = "input x: [8]; let h = Dense(4)(x); output y = Add()([x, h]);";
    check_fix(merge, "Add cannot merge `x` (None, 8) with `h` (None, 4)", &["Dense(8)(h)"], "([x, h])", "([x, Dense(8)(h)])");
    check_fix(merge, "Add cannot merge", &["Concatenate()([x, h])"], "Add()([x, h])", "Concatenate()([x, h])");
    // Broadcast conflict on an inner axis: concatenate along it.
    let inner = "input a: [3, 8]; input b: [5, 8]; output y = Maximum()([a, b]);";
    check_fix(inner, "axis 1 has size 3 vs 5", &["Concatenate(axis = 1)([a, b])"], "Maximum()([a, b])", "Concatenate(axis = 1)([a, b])");

    // A recurrent layer on a vector: a sequence of one feature; an image: its rows as steps.
    let rnn = "input x: [8]; output y = LSTM(4)(x);";
    check_fix(rnn, "LSTM needs a sequence", &["Reshape((8, 1))(x)"], "LSTM(4)(x)", "LSTM(4)(Reshape((8, 1))(x))");
    let rnn_image = "input x: [4, 4, 3]; output y = GRU(4)(x);";
    check_fix(rnn_image, "GRU needs a sequence", &["Reshape((4, 12))(x)"], "GRU(4)(x)", "GRU(4)(Reshape((4, 12))(x))");
    // An LSTM given one state: both.
    let states = "input x: [5, 3]; input h: [4]; input c: [4]; output y = Add()([LSTM(4)(x, initial_state = [h]), c]);";
    check_fix(states, "takes 2 initial states", &["initial_state = [h, c]"], "initial_state = [h]", "initial_state = [h, c]");

    // Conv2D on a vector: a reshape the window accepts.
    let conv64 = "input x: [64]; output y = Conv2D(4, 3)(x);";
    check_fix(conv64, "Conv2D expects an image", &["Reshape((8, 8, 1))(x)"], "Conv2D(4, 3)(x)", "Conv2D(4, 3)(Reshape((8, 8, 1))(x))");
    check_fix(
        conv64,
        "Conv2D expects an image",
        &["Reshape((64, 1))(x)", "Conv1D"],
        "Conv2D(4, 3)(x)",
        "Conv1D(4, 3)(Reshape((64, 1))(x))",
    );
    // Too few values for a 3×3 'valid' window in any image: 'same' padding, or Conv1D.
    let conv8 = "input x: [8]; output y = Conv2D(4, 3)(x);";
    check_fix(
        conv8,
        "Conv2D expects an image",
        &["Reshape((4, 2, 1))(x)", "padding = same"],
        "Conv2D(4, 3)(x)",
        "Conv2D(4, 3, padding = same)(Reshape((4, 2, 1))(x))",
    );
    check_fix(conv8, "Conv2D expects an image", &["Reshape((8, 1))(x)", "Conv1D"], "Conv2D(4, 3)(x)", "Conv1D(4, 3)(Reshape((8, 1))(x))");
    // Conv1D on a vector, and on an image.
    check_fix(
        "input x: [10]; output y = Conv1D(4, 3)(x);",
        "Conv1D expects a sequence",
        &["Reshape((10, 1))(x)"],
        "Conv1D(4, 3)(x)",
        "Conv1D(4, 3)(Reshape((10, 1))(x))",
    );
    check_fix(
        "input x: [6, 6, 3]; output y = Conv1D(4, 3)(x);",
        "Conv1D expects a sequence",
        &["Reshape((36, 3))(x)"],
        "Conv1D(4, 3)(x)",
        "Conv1D(4, 3)(Reshape((36, 3))(x))",
    );
    // Conv2D on a sequence: add a channel axis.
    check_fix(
        "input x: [10, 4]; output y = Conv2D(4, 3)(x);",
        "Conv2D expects an image",
        &["Reshape((10, 4, 1))(x)"],
        "Conv2D(4, 3)(x)",
        "Conv2D(4, 3)(Reshape((10, 4, 1))(x))",
    );
    // Pooling on a vector.
    check_fix(
        "input x: [16]; output y = MaxPooling2D()(x);",
        "MaxPooling2D expects an image",
        &["Reshape((4, 4, 1))(x)"],
        "MaxPooling2D()(x)",
        "MaxPooling2D()(Reshape((4, 4, 1))(x))",
    );
    // RepeatVector on a sequence: flatten or pool it first.
    let rv = "input x: [4, 3]; output y = RepeatVector(2)(x);";
    check_fix(
        rv,
        "RepeatVector expects a vector",
        &["RepeatVector(2)(Flatten()(x))"],
        "RepeatVector(2)(x)",
        "RepeatVector(2)(Flatten()(x))",
    );
    check_fix(rv, "RepeatVector expects a vector", &["GlobalAveragePooling1D()(x)"], "(x)", "(GlobalAveragePooling1D()(x))");
    // Permute with too few entries: one per axis.
    check_fix(
        "input x: [4, 3, 2]; output y = Permute((2, 1))(x);",
        "reorders 2 axes after the batch",
        &["Permute((3, 2, 1))(x)"],
        "Permute((2, 1))(x)",
        "Permute((3, 2, 1))(x)",
    );
    // TimeDistributed on a vector: call the layer directly, or make steps first.
    let td = "input x: [4]; output y = TimeDistributed(Dense(2))(x);";
    check_fix(td, "TimeDistributed needs a sequence", &["RepeatVector(4)(x)"], "(x);", "(RepeatVector(4)(x));");
    // A 'valid' window that does not fit.
    check_fix(
        "input x: [2, 2, 1]; output y = MaxPooling2D(3)(x);",
        "does not fit",
        &["padding = same"],
        "MaxPooling2D(3)",
        "MaxPooling2D(3, padding = same)",
    );

    // Reshape with the wrong element count.
    check_fix(
        "input x: [12]; output y = Reshape((5, 2))(x);",
        "needs 10 elements",
        &["Reshape((12,))(x)"],
        "Reshape((5, 2))(x)",
        "Reshape((12,))(x)",
    );
    // Dot over axes of different sizes: project one side.
    check_fix(
        "input q: [8]; input k: [4]; output s = Dot(axes = 1)([q, k]);",
        "but the sizes differ",
        &["Dense(8)(k)"],
        "[q, k]",
        "[q, Dense(8)(k)]",
    );
    // Dot on rank 4: flatten first.
    check_fix(
        "input i: [4, 4, 8]; input k: [128]; output s = Dot(axes = -1)([i, k]);",
        "Dot supports tensors of rank 2 or 3",
        &["Flatten()(i)"],
        "[i, k]",
        "[Flatten()(i), k]",
    );
    // Concatenate of different ranks: flatten.
    check_fix(
        "input a: [8]; input b: [4, 8]; output y = Concatenate()([a, b]);",
        "same rank",
        &["Flatten()(b)"],
        "[a, b]",
        "[a, Flatten()(b)]",
    );
    // Embedding on a float input: declare it as integers.
    check_fix(
        "input tokens: [12]; output y = Embedding(50, 8)(tokens);",
        "integer token ids",
        &["input tokens: [12] as i32;"],
        "input tokens: [12];",
        "input tokens: [12] as i32;",
    );
    // A misspelled tensor, layer kind, argument and activation: the suggestion.
    check_fix("input features: [8]; output y = Dense(1)(featurse);", "unknown tensor", &["features"], "(featurse)", "(features)");
    check_fix("input x: [8]; output y = Dens(1)(x);", "unknown layer", &["Dense"], "Dens(1)", "Dense(1)");
    check_fix("input x: [8]; output y = Dense(1, activaton = relu)(x);", "has no argument", &["activation"], "activaton", "activation");
    check_fix("input x: [8]; output y = Dense(1, activation = rleu)(x);", "unknown activation", &["relu"], "rleu", "relu");
}
